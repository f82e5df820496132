"""python -m kserve_torchserve: parse settings, serve, exit with the server's code."""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from typing import Sequence

from .errors import StartupError
from .config.settings import load_settings

logger = logging.getLogger("kserve_torchserve")


def _configure_logging(level: str) -> None:
    """Our lines and TorchServe's at TS_LOG_LEVEL; kserve's and uvicorn's per-request INFO lines
    (latency, access log, every gRPC call) only at DEBUG, because they cost every request."""
    python_level = {"TRACE": "DEBUG", "WARN": "WARNING"}.get(level, level)
    quiet_level = python_level if python_level == "DEBUG" else "WARNING"
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = {"kserve_torchserve": python_level, "torchserve": python_level, "kserve": quiet_level,
              "kserve.trace": quiet_level, "uvicorn": quiet_level, "uvicorn.access": quiet_level}
    for name, log_level in levels.items():
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(log_level)
        log.propagate = False


def _loop_factory() -> "asyncio.AbstractEventLoop":
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except StartupError as exc:
        print(f"kserve-torchserve: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.ts.log_level)
    # kserve 0.21 answers with FastAPI's ORJSONResponse, which FastAPI now warns about on
    # the first request: kserve's to change, and noise in every pod's log until then.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    from .server import serve  # imports kserve's app; after settings so --help stays fast

    try:
        with asyncio.Runner(loop_factory=_loop_factory) as runner:
            return runner.run(serve(settings))
    except StartupError as exc:
        logger.error("start-up failed: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
