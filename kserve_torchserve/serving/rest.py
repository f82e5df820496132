"""kserve's REST server and DataPlane as this runtime runs them.

- ``TorchServeDataPlane``: kserve's server readiness is always true; ours is true only
  when every model is ready (TorchServe's workers READY).
- ``LeanRESTServer``: kserve's REST server without its per-request timing middleware,
  answering ``/metrics`` with our merged scrape (``metrics.py``), every error in one format
  and one log line (``errors.py``), and slow clients cut off (``deadlines.py``).
- ``upstream_error_handler``: UpstreamError (a failure in or on the way to TorchServe)
  -> its HTTP status and ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Awaitable, Callable, Dict, Sequence

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer

from ..errors import ManagementError, UpstreamError
from . import errors, logs, openapi
from .deadlines import timed_protocol
from .metrics import MetricsScraper



def per_request_logging() -> bool:
    """kserve's per-request lines (timing, latency with the request id) are on: TS_LOG_LEVEL=DEBUG
    (__main__ opens kserve's loggers at DEBUG only)."""
    return logging.getLogger("kserve.trace").isEnabledFor(logging.INFO)


class TorchServeDataPlane(DataPlane):  # type: ignore[misc]
    """kserve's DataPlane, with our readiness and the versions in a model's metadata.

    kserve's server readiness is always true; ours is ``ready_check()``: TorchServe up and
    every served model version READY (management knows which those are).
    """

    def __init__(self, model_registry: Any, ready_check: Callable[[], bool] | None = None) -> None:
        super().__init__(model_registry=model_registry)
        self._ready_check = ready_check

    async def ready(self) -> bool:
        if self._ready_check is not None:
            return self._ready_check()
        models = self._model_registry.get_models().values()
        return bool(models) and all(getattr(m, "ready", False) for m in models)

    async def model_metadata(self, model_name: str) -> Dict[str, Any]:
        metadata: Dict[str, Any] = await super().model_metadata(model_name)
        versions = getattr(self.get_model_from_registry(model_name), "versions", None)
        if isinstance(versions, dict):
            metadata["versions"] = sorted(versions)
        return metadata


class LeanRESTServer(RESTServer):  # type: ignore[misc]
    """kserve's REST server without its per-request TimingMiddleware.

    That middleware reads the process CPU time (getrusage) twice and formats a log line
    for every request, for a trace logger that is off unless TS_LOG_LEVEL=DEBUG; it
    cost 7% of our CPU per request in a py-spy profile. Latency histograms per model
    stay: kserve.Model records them.
    """

    metrics: MetricsScraper | None = None
    routes: Sequence[tuple[str, Callable[..., Awaitable[Any]], list[str]]] = ()  # ours: (path, endpoint, methods)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn has no timeout for a request's head or body (slowloris): ours (deadlines.py).
        self.config.http = timed_protocol()

    def on_signal(self, heard: Callable[[str], None]) -> None:
        """Call ``heard(signal name)`` the moment SIGTERM/SIGINT arrives, in the event loop.

        uvicorn takes SIGTERM/SIGINT for itself while it serves (``signal.signal``, over the
        loop's handlers) and only gives them back once it has drained; the server must hear
        them at once, so that gRPC stops taking calls at the same moment as HTTP. uvicorn's
        handler stays and runs first. Call from inside the running loop, before ``start()``.
        """
        server = self._server  # kserve keeps its uvicorn.Server private
        loop = asyncio.get_running_loop()
        uvicorns = server.handle_exit

        def handle_exit(sig: int, frame: Any) -> None:
            uvicorns(sig, frame)
            loop.call_soon_threadsafe(heard, signal.Signals(sig).name)

        server.handle_exit = handle_exit  # read by uvicorn's capture_signals() when it starts serving

    def _add_exception_handlers(self, app: Any) -> None:
        # kserve's handlers log a traceback at ERROR for every bad request (18-31 lines per
        # client 4xx) and FastAPI's 422 echoes the whole body: one handler, one format, one line.
        for kind in errors.HANDLED:
            app.add_exception_handler(kind, errors.handle)

    def _add_middlewares(self, app: Any) -> None:
        if per_request_logging():
            super()._add_middlewares(app)

    def _register_endpoints(self, app: Any) -> None:
        # Registered first, so ours answer where kserve has a route of the same path
        # (/metrics: KServe's registry only; versioned v2 routes: "not supported").
        if self.metrics is not None:
            app.add_api_route("/metrics", self.metrics.handle, methods=["GET"])
        for path, endpoint, methods in self.routes:
            app.add_api_route(path, endpoint, methods=methods, include_in_schema=True)
        super()._register_endpoints(app)
        # /openapi.json describes what the fast path and our routes take (bodies, the key, the
        # versioned route), so clients and fuzzers see the API as it is.
        openapi.install(app)


async def upstream_error_handler(request: Request, exc: UpstreamError) -> Response:
    """``{"error": message}`` with the error's status (and Retry-After), logged once (errors.py)."""
    return errors.error_response(request.scope, exc)


async def management_error_handler(request: Request, exc: ManagementError) -> JSONResponse:
    """A refused or failed repository-extension call on kserve's routes, in kserve's error format."""
    logs.request_failed(exc.status, errors.route_of(request.scope), errors.request_id_of(request.scope["headers"]),
                        exc.message)
    return JSONResponse(status_code=exc.status, content={"error": exc.message})
