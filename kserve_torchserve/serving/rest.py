"""kserve's REST server and DataPlane as this runtime runs them.

- ``TorchServeDataPlane``: kserve's server readiness is always true; ours is true only
  when every model is ready (TorchServe's workers READY).
- ``LeanRESTServer``: kserve's REST server without its per-request timing middleware,
  answering ``/metrics`` with our merged scrape (``metrics.py``).
- ``upstream_error_handler``: UpstreamError (a failure in or on the way to TorchServe)
  -> its HTTP status and ``{"error": message}``.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, Sequence

from fastapi.responses import JSONResponse
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer

from ..errors import ManagementError, UpstreamError
from .metrics import MetricsScraper

logger = logging.getLogger(__name__)


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


async def upstream_error_handler(_: Any, exc: UpstreamError) -> JSONResponse:
    # One line, no traceback: these are expected failures with a message for the client.
    logger.warning("request failed (%d): %s", exc.http_status, exc.message)
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return JSONResponse(status_code=exc.http_status, content={"error": exc.message}, headers=headers)


async def management_error_handler(_: Any, exc: ManagementError) -> JSONResponse:
    """A refused or failed repository-extension call on kserve's routes, in kserve's error format."""
    if exc.status >= 500:
        logger.warning("model repository call failed (%d): %s", exc.status, exc.message)
    return JSONResponse(status_code=exc.status, content={"error": exc.message})
