"""Routes only: TorchServe's management API and the v2 repository extension on the KServe HTTP port.

Wire format, as TorchServe 0.12 answers on its own management port:
- ``GET /models[?limit=&next_page_token=]`` -> ``{"nextPageToken"?, "models": [{"modelName", "modelUrl"}]}``
  (default versions, sorted by name, pages of at most 100);
- ``GET /models/{m}``, ``/models/{m}/{v}``, ``/models/{m}/all`` -> a list of TorchServe's describe
  objects (modelName, modelVersion, modelUrl, minWorkers, maxWorkers, batchSize,
  maxBatchDelay, workers[...], ...), with our version and the URL it came from;
- writes, each behind the switch and the key (``security.Gate``):
  ``POST /models`` (url, model_name, model_version, handler-free: the archive's, batch_size,
  max_batch_delay, initial_workers, response_timeout, synchronous),
  ``PUT /models/{m}[/{v}]`` (min_worker, max_worker, synchronous),
  ``PUT /models/{m}/{v}/set-default``, ``DELETE /models/{m}[/{v}]`` -> ``{"status": "..."}``;
- errors: ``{"code", "type", "message"}`` with TorchServe's statuses.
Parameters come as a query string, a JSON object, a urlencoded form or multipart form fields
(curl -F), whichever the client sends. Plus ``POST /v2/repository/index`` (Triton's
extension: ``[{"name", "version", "state", "reason"}]``), the versioned v2 routes kserve
leaves unimplemented, and kserve's model-ready routes (``GET /v2/models/{m}/ready``,
``GET /v1/models/{m}``) answered as kserve does, plus the reason in the 503 of a model whose
workers could not load.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from fastapi.responses import JSONResponse
from starlette.requests import Request

from kserve.errors import ModelNotFound, ModelNotReady

from ..errors import ManagementError
from ..model_store.fetch import redact
from ..serving.model import TorchServeModel
from .operations import Operations
from .registration import Registration
from .params import flag, integer, json_body, parameters
from .registry import ModelRegistry
from .repository import RepositoryExtension
from .security import Gate, check_name, check_version
from .sources import Sources

logger = logging.getLogger(__name__)

_PAGE = 100
Endpoint = Callable[..., Awaitable[Any]]


def answer(status: int, body: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)


def failed(exc: ManagementError) -> JSONResponse:
    return answer(exc.status, exc.body())


class ManagementApi:
    def __init__(self, operations: Operations, sources: Sources, gate: Gate, repository: RepositoryExtension,
                 describe: Callable[[str, str], Awaitable[list[dict[str, Any]]]]) -> None:
        self.operations = operations
        self.repository = repository
        self.registry: ModelRegistry = operations.registry
        self.sources = sources
        self.gate = gate
        self._describe = describe  # (name, TorchServe version) -> TorchServe's describe objects
        self._background: set[asyncio.Task[None]] = set()

    def routes(self) -> list[tuple[str, Endpoint, list[str]]]:
        """(path, endpoint, methods), registered before kserve's own routes."""
        return [
            ("/models", self.list_models, ["GET"]),
            ("/models", self.register, ["POST"]),
            ("/models/{name}/traffic", self.get_traffic, ["GET"]),  # before /models/{name}/{version}
            ("/models/{name}/traffic", self.set_traffic, ["PUT"]),
            ("/models/{name}", self.describe, ["GET"]),
            ("/models/{name}", self.scale, ["PUT"]),
            ("/models/{name}", self.unregister, ["DELETE"]),
            ("/models/{name}/{version}", self.describe, ["GET"]),
            ("/models/{name}/{version}", self.scale, ["PUT"]),
            ("/models/{name}/{version}", self.unregister, ["DELETE"]),
            ("/models/{name}/{version}/set-default", self.set_default, ["PUT"]),
            ("/v2/repository/index", self.index, ["POST"]),
            ("/v2/models/{name}/versions/{version}", self.version_metadata, ["GET"]),
            ("/v2/models/{name}/versions/{version}/ready", self.version_ready, ["GET"]),
            # kserve's two model-ready routes, answered the same, plus why a model is not served
            ("/v2/models/{name}/ready", self.model_ready, ["GET"]),
            ("/v1/models/{name}", self.model_ready, ["GET"]),
        ]

    async def _guarded(self, request: Request, work: Callable[[dict[str, str]], Awaitable[tuple[int, Any]]],
                       write: bool = True) -> JSONResponse:
        try:
            if write:
                self.gate.check(request.headers.get("authorization"))
            return answer(*await work(await parameters(request)))
        except ManagementError as exc:
            if exc.status >= 500:
                logger.warning("%s %s failed (%d): %s", request.method, request.url.path, exc.status, exc.message)
            return failed(exc)

    # -- reads ------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> JSONResponse:
        async def work(params: dict[str, str]) -> tuple[int, Any]:
            try:
                limit = int(params.get("limit", _PAGE))
            except ValueError:
                limit = _PAGE
            limit = _PAGE if limit > _PAGE or limit < 0 else limit
            try:
                start = max(int(params.get("next_page_token", 0)), 0)
            except ValueError:
                start = 0
            names = sorted(self.registry.models)
            body: dict[str, Any] = {}
            if start + limit <= len(names):
                body["nextPageToken"] = str(start + limit)
            body["models"] = [{"modelName": n, "modelUrl": self.operations.find(n).url}
                              for n in names[start:start + limit]]
            return 200, body
        return await self._guarded(request, work, write=False)

    async def _description(self, r: Registration) -> dict[str, Any]:
        try:
            (found, *_) = await self._describe(r.spec.name, r.ts_version) or [{}]
        except Exception as exc:  # TorchServe restarting: what we know, without its live worker list
            logger.debug("describe %s: %s", r.spec.name, exc)
            found = {"workers": []}
        return {**found, "modelName": r.spec.name, "modelVersion": r.spec.version, "modelUrl": r.url,
                "minWorkers": r.min_workers, "maxWorkers": r.max_workers, "batchSize": r.batch_size,
                "maxBatchDelay": r.max_batch_delay, "responseTimeout": r.response_timeout}

    async def describe(self, request: Request, name: str, version: str | None = None) -> JSONResponse:
        async def work(_: dict[str, str]) -> tuple[int, Any]:
            if version == "all":
                self.operations.find(name)  # 404 for an unknown name
                served = self.registry.models[name]
                regs = [self.operations.registrations[(name, v)] for v in sorted(served.versions)]
            else:
                regs = [self.operations.find(name, version)]
            return 200, [await self._description(r) for r in regs]
        return await self._guarded(request, work, write=False)

    async def index(self, request: Request) -> JSONResponse:
        """Triton's ``POST /v2/repository/index``: every model version with its state."""
        async def work(params: dict[str, str]) -> tuple[int, Any]:
            return 200, await self.repository.index(flag(params, "ready", False))
        return await self._guarded(request, work, write=False)

    def _version(self, name: str, version: str) -> TorchServeModel:
        model = self.registry.find(name, version)
        if model is None:
            raise ModelNotFound(f"{name} (version {version})")
        return model

    async def version_metadata(self, name: str, version: str) -> dict[str, Any]:
        """kserve's v2 model metadata for one version (kserve itself answers "not supported")."""
        model = self._version(name, version)
        return {"name": name, "versions": [model.version], "platform": "", "inputs": [], "outputs": []}

    async def version_ready(self, name: str, version: str) -> dict[str, Any]:
        model = self._version(name, version)
        if not model.ready:
            raise ModelNotReady(f"{name} (version {version})", model.failure)
        return {"name": name, "ready": True}

    async def model_ready(self, name: str) -> dict[str, Any]:
        """kserve's answer (200 ``{"name", "ready": true}``, 503 not ready, 404 unknown), and for a model
        whose workers could not load, the reason in the 503's message."""
        model = self.registry.find(name)
        if model is None:
            raise ModelNotFound(name)
        if not model.ready:
            raise ModelNotReady(name, model.failure)
        return {"name": name, "ready": True}

    # -- writes -----------------------------------------------------------------------------

    async def register(self, request: Request) -> JSONResponse:
        async def work(params: dict[str, str]) -> tuple[int, Any]:
            url = params.get("url", "")
            if not url:
                raise ManagementError(400, "Parameter url is required.")
            name = check_name(params["model_name"]) if params.get("model_name") else None
            version = check_version(params["model_version"]) if params.get("model_version") else None
            overrides = {"batch_size": integer(params, "batch_size"),
                         "max_batch_delay": integer(params, "max_batch_delay"),
                         "min_workers": integer(params, "initial_workers"),
                         "response_timeout": integer(params, "response_timeout")}
            if overrides["min_workers"] is not None:
                overrides["max_workers"] = overrides["min_workers"]
            synchronous = flag(params, "synchronous", False)
            work_dir = self.sources.work_dir()
            try:
                source = await self.sources.from_url(url, work_dir)
            except BaseException:
                self.sources.forget(work_dir)
                raise
            registering = self.operations.register(source, work_dir, redact(url), name, version, overrides)
            if synchronous:
                try:
                    return await registering
                except BaseException:
                    self.sources.forget(work_dir)
                    raise
            self._in_background(registering, work_dir)
            return 202, {"status": "Processing worker updates..."}
        return await self._guarded(request, work)

    def _in_background(self, registering: Awaitable[tuple[int, Any]], work_dir: Any) -> None:
        async def run() -> None:
            try:
                await registering
            except ManagementError as exc:
                self.sources.forget(work_dir)
                logger.warning("registering a model failed (%d): %s", exc.status, exc.message)

        task = asyncio.ensure_future(run())
        self._background.add(task)  # a reference, or the task may be collected mid-way
        task.add_done_callback(self._background.discard)

    async def scale(self, request: Request, name: str, version: str | None = None) -> JSONResponse:
        async def work(params: dict[str, str]) -> tuple[int, Any]:
            minimum = integer(params, "min_worker") or 1
            maximum = integer(params, "max_worker") or minimum
            chosen = version or params.get("model_version") or None
            return await self.operations.scale(name, chosen, minimum, maximum, flag(params, "synchronous", False))
        return await self._guarded(request, work)

    async def set_default(self, request: Request, name: str, version: str) -> JSONResponse:
        async def work(_: dict[str, str]) -> tuple[int, Any]:
            return await self.operations.set_default(name, version)
        return await self._guarded(request, work)

    async def get_traffic(self, request: Request, name: str) -> JSONResponse:
        async def work(_: dict[str, str]) -> tuple[int, Any]:
            return self.operations.traffic(name)
        return await self._guarded(request, work, write=False)

    async def set_traffic(self, request: Request, name: str) -> JSONResponse:
        """Body: {"weights": {"1.0": 80, "2.0": 20}, "shadow": {...}, "sticky_header": ..., "guard": {...}}."""
        async def work(_: dict[str, str]) -> tuple[int, Any]:
            split = await json_body(request, "a traffic split", '{"weights": {"1.0": 80, "2.0": 20}}')
            return await self.operations.set_traffic(name, split)
        return await self._guarded(request, work)

    async def unregister(self, request: Request, name: str, version: str | None = None) -> JSONResponse:
        async def work(_: dict[str, str]) -> tuple[int, Any]:
            return await self.operations.unregister(name, version)
        return await self._guarded(request, work)


