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
from typing import Any

from fastapi.responses import JSONResponse
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer

from ..errors import UpstreamError
from .metrics import MetricsScraper

logger = logging.getLogger(__name__)


def per_request_logging() -> bool:
    """kserve's per-request lines (timing, latency with the request id) are on: TS_LOG_LEVEL=DEBUG
    (__main__ opens kserve's loggers at DEBUG only)."""
    return logging.getLogger("kserve.trace").isEnabledFor(logging.INFO)


class TorchServeDataPlane(DataPlane):  # type: ignore[misc]
    """kserve's server readiness is always true; ours is true only when every model is ready."""

    async def ready(self) -> bool:
        models = self._model_registry.get_models().values()
        return bool(models) and all(getattr(m, "ready", False) for m in models)


class LeanRESTServer(RESTServer):  # type: ignore[misc]
    """kserve's REST server without its per-request TimingMiddleware.

    That middleware reads the process CPU time (getrusage) twice and formats a log line
    for every request, for a trace logger that is off unless TS_LOG_LEVEL=DEBUG; it
    cost 7% of our CPU per request in a py-spy profile. Latency histograms per model
    stay: kserve.Model records them.
    """

    metrics: MetricsScraper | None = None

    def _add_middlewares(self, app: Any) -> None:
        if per_request_logging():
            super()._add_middlewares(app)

    def _register_endpoints(self, app: Any) -> None:
        # Registered first, so it answers /metrics instead of kserve's (KServe's registry only).
        if self.metrics is not None:
            app.add_api_route("/metrics", self.metrics.handle, methods=["GET"])
        super()._register_endpoints(app)


async def upstream_error_handler(_: Any, exc: UpstreamError) -> JSONResponse:
    # One line, no traceback: these are expected failures with a message for the client.
    logger.warning("request failed (%d): %s", exc.http_status, exc.message)
    return JSONResponse(status_code=exc.http_status, content={"error": exc.message})
