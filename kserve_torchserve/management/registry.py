"""What is served: model names -> versions, the default version, and the object kserve gets for a name.

``ModelRegistry`` is kserve's ``ModelRepository`` (so kserve's DataPlane, REST and gRPC
servers use it as they use theirs): ``get_model(name)`` answers a ``ServedModel`` (served.py),
one per name, which picks the version for each request (traffic.py) and hands the request to
that version's ``TorchServeModel``. Changes are single assignments on the event loop, so a
request sees the registry before or after a change, never half of one.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from kserve.errors import ModelNotFound
from kserve.model_repository import ModelRepository

from ..serving.model import TorchServeModel
from .served import ServedModel


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
