"""What is served: model names -> versions, the default version, and the object kserve gets for a name.

``ModelRegistry`` is kserve's ``ModelRepository`` (so kserve's DataPlane, REST and gRPC
servers use it as they use theirs): ``get_model(name)`` answers a ``ServedModel``, one per
name, which picks the version for each request and hands the request to that version's
``TorchServeModel``. Changes are single dictionary assignments on the event loop, so a
request sees the registry before or after a change, never half of one.

Which version answers: the ``x-model-version`` header (set by the client, or by a
versioned route such as ``/v2/models/{m}/versions/{v}/infer``), else the v2 request's
``model_version`` (gRPC), else the default version.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Union

import kserve
from kserve.errors import ModelNotFound
from kserve.model_repository import ModelRepository
from kserve.protocol.infer_type import InferRequest, InferResponse

from ..errors import UpstreamError
from ..serving.model import VERSION_HEADER, TorchServeModel


class ServedModel(kserve.Model):  # type: ignore[misc]
    """All versions of one model name, as kserve sees one model."""

    grpc_fast_path = True  # predict() picks the version and answers: gRPC ModelInfer may call it directly

    def __init__(self, name: str) -> None:
        # return_response_headers: kserve's Model.__call__ then hands predict a dict for
        # the response headers, where the answering version is written.
        super().__init__(name, return_response_headers=True)
        self.versions: dict[str, TorchServeModel] = {}
        self.default = ""

    @property
    def ready(self) -> bool:  # kserve reads model.ready for /v2/models/{m}/ready and ModelReady
        model = self.versions.get(self.default)
        return bool(model is not None and model.ready)

    @ready.setter
    def ready(self, value: bool) -> None:
        pass  # kserve.Model's constructor sets it; readiness is the default version's

    def load(self) -> bool:
        return self.ready

    def stop(self) -> None:
        pass  # kserve calls it on unload; versions are stopped by the operations that remove them

    def choose(self, headers: Optional[Dict[str, str]], payload: Any = None) -> TorchServeModel:
        """The version that answers this request; 404 naming the versions there are."""
        wanted = (headers or {}).get(VERSION_HEADER) or (
            payload.model_version if isinstance(payload, InferRequest) else None) or self.default
        model = self.versions.get(wanted)
        if model is None:
            raise UpstreamError(404, f"model {self.name} has no version {wanted!r}: versions are "
                                     f"{', '.join(sorted(self.versions))}")
        return model

    async def predict(
        self,
        payload: Union[Dict[str, Any], InferRequest],
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Union[Dict[str, Any], InferResponse]:
        model = self.choose(headers, payload)
        if response_headers is not None:
            response_headers[VERSION_HEADER] = model.version
        return await model.predict(payload, headers)

    async def explain(
        self, payload: Union[Dict[str, Any], InferRequest], headers: Optional[Dict[str, str]] = None
    ) -> Dict[str, Any]:
        model = self.choose(headers, payload)
        if headers is not None:
            headers[VERSION_HEADER] = model.version  # postprocess copies it into the response headers
        return await model.explain(payload, headers)

    def postprocess(
        self, result: Any, headers: Optional[Dict[str, str]] = None, response_headers: Optional[Dict[str, str]] = None
    ) -> Any:
        if response_headers is not None and headers and VERSION_HEADER not in response_headers:
            version = headers.get(VERSION_HEADER)
            if version:
                response_headers[VERSION_HEADER] = version
        return result


class ModelRegistry(ModelRepository):  # type: ignore[misc]
    """kserve's ModelRepository with versions: ``models`` maps a name to its ServedModel."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, ServedModel] = {}

    def versions(self) -> Iterator[TorchServeModel]:
        """Every served version of every model."""
        for served in list(self.models.values()):
            yield from list(served.versions.values())

    def find(self, name: str, version: str | None = None) -> TorchServeModel | None:
        served = self.models.get(name)
        if served is None:
            return None
        return served.versions.get(version or served.default)

    def add(self, model: TorchServeModel, make_default: bool = False) -> None:
        """Serve ``model`` (replacing the same version, as a reload does); the first version is the default."""
        served = self.models.get(model.name)
        if served is None:
            served = ServedModel(model.name)
            served.enable_latency_logging = model.enable_latency_logging
            served.versions[model.version] = model
            served.default = model.version
            self.models[model.name] = served  # one assignment: visible whole
            return
        served.versions = {**served.versions, model.version: model}
        if make_default or served.default not in served.versions:
            served.default = model.version

    def remove(self, name: str, version: str) -> TorchServeModel:
        """Stop routing to one version; the name goes when its last version does."""
        served = self.models.get(name)
        if served is None or version not in served.versions:
            raise ModelNotFound(name)
        model = served.versions[version]
        remaining = {v: m for v, m in served.versions.items() if v != version}
        if not remaining:
            del self.models[name]
            return model
        if served.default == version:
            served.default = max(remaining, key=version_key)  # the highest version left takes over
        served.versions = remaining
        return model

    def set_default(self, name: str, version: str) -> None:
        served = self.models.get(name)
        if served is None or version not in served.versions:
            raise ModelNotFound(name)
        served.default = version

    def update(self, model: Any, name: Optional[str] = None) -> None:
        raise TypeError("use ModelRegistry.add: it keeps versions")

    def unload(self, name: str) -> None:
        raise TypeError("unloading goes through management.operations")


def version_key(version: str) -> tuple[tuple[int, object], ...]:
    """Order versions as numbers where they are numbers: 1.10 after 1.9."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in version.replace("-", ".").split("."))
