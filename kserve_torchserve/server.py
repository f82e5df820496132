"""The whole server's life in one asyncio loop: start-up, serving, shutdown.

We drive kserve's RESTServer and GRPCServer ourselves instead of calling
``ModelServer.start()``, because its shutdown unloads models from inside a signal
handler while gRPC requests may still be in flight, and it has no place for a
supervised child process. Signal handlers only set an event (uvicorn's style); the
main coroutine does the work in a fixed order:
stop accepting -> drain HTTP and gRPC -> stop TorchServe -> exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import logging
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from kserve.model_server import app as kserve_app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from kserve.model_repository import ModelRepository
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING

from .auth import TokenSource
from .client import TorchServeClient
from .cpus import threads_per_worker
from .errors import StartupError, TorchServeGaveUp, UpstreamError
from .fastpath import FastPath
from .grpc_fastpath import LeanGRPCServer
from .model import TorchServeModel
from .metrics import CountRequests, MetricsScraper, merged_metrics_config
from .model_store import build_model_store
from .process import Layout, TorchServeProcess
from .properties import LOOPBACK, Ports, effective_properties, render_properties
from .settings import Settings
from .storage_process import fetch_in_child
from .supervisor import RestartPolicy, Supervisor
from .tslog import render_log4j2

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


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now; held open together so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Backend:
    supervisor: Supervisor
    client: TorchServeClient
    models: list[TorchServeModel]
    metrics_url: str


async def start_backend(settings: Settings, layout: Layout) -> Backend:
    """Storage -> model store -> config.properties -> TorchServe ready."""
    storage_dir = await fetch_in_child(
        settings.storage_uri, layout.root / "download", settings.max_unpacked_bytes, settings.ts.log_level
    )
    store = await asyncio.to_thread(
        build_model_store, storage_dir, layout.model_store, settings.model_name, settings.ts.load_models
    )
    user_text = ""
    for path in (store.user_properties, settings.ts.config_file):
        if path is not None:
            user_text += path.read_text() + "\n"
    layout.create()
    ports = Ports(*free_ports(5))
    props = effective_properties(settings.ts, store.specs, ports, str(layout.model_store), user_text)
    user_metrics = next((p for p in (storage_dir / "metrics.yaml", storage_dir / "config" / "metrics.yaml")
                         if storage_dir.is_dir() and p.is_file()), None)
    if user_metrics is not None and "metrics_config" not in props:
        import ts

        default = Path(ts.__file__).parent / "configs" / "metrics.yaml"
        props["metrics_config"] = str(merged_metrics_config(default, user_metrics, layout.root / "metrics.yaml"))
    layout.config_file.write_text(render_properties(props))
    layout.log_config.write_text(render_log4j2(settings.ts.log_level))
    tokens = TokenSource(
        layout.key_file,
        props["management_address"],
        enabled=props.get("disable_token_authorization", "false").strip().lower() != "true",
    )
    client = TorchServeClient(
        f"{LOOPBACK}:{ports.grpc_inference}", f"{LOOPBACK}:{ports.grpc_management}", tokens,
        inference_url=props["inference_address"], max_request_bytes=int(props["max_request_size"]),
    )
    entries = json.loads(props["models"])  # the per-model values TorchServe will use
    debug = per_request_logging()
    models = [
        TorchServeModel(
            spec, client, float(entries[spec.name][spec.version]["responseTimeout"]), int(props["job_queue_size"])
        )
        for spec in store.specs
    ]
    for model in models:
        model.enable_latency_logging = debug  # kserve's per-request line with the request id: DEBUG only
    workers = sum(entry["minWorkers"] for versions in entries.values() for entry in versions.values())
    torch_threads = threads_per_worker(workers)
    supervisor = Supervisor(
        process_factory=lambda: TorchServeProcess(layout, torch_threads=torch_threads,
                                                  grace_s=settings.grace_period_s),
        backend=client,
        models=models,
        startup_timeout_s=settings.startup_timeout_s,
        grace_period_s=settings.grace_period_s,
        health_interval_s=settings.health_interval_s,
        policy=RestartPolicy(max_restarts=settings.max_restarts, window_s=settings.restart_window_s),
        on_restart=tokens.reset,
    )
    try:
        await supervisor.start()
        await log_summary(settings, client, models, props, os.environ.get("OMP_NUM_THREADS", str(torch_threads)))
    except BaseException:
        await supervisor.stop()
        await client.close()
        raise
    return Backend(supervisor, client, models, props["metrics_address"])


async def log_summary(
    settings: Settings, client: TorchServeClient, models: list[TorchServeModel], props: dict[str, str], threads: str
) -> None:
    """One block at start-up with what is being served, and how."""
    import ts.version

    lines = [
        f"kserve-torchserve serving {settings.storage_uri} with TorchServe {ts.version.__version__}",
        f"  ports: http {settings.http_port}, grpc {settings.grpc_port if settings.enable_grpc else 'off'}"
        f" (TorchServe on loopback: {props['inference_address']}, grpc {props['grpc_inference_port']})",
        f"  number_of_gpu={props['number_of_gpu']}, torch threads per worker={threads}",
    ]
    for model in models:
        (description, *_) = await client.describe(model.name) or [{}]
        workers = description.get("workers") or []
        gpus = sum(1 for w in workers if w.get("gpu"))
        device = f"GPU ({gpus} of {len(workers)} workers)" if gpus else "CPU (no GPU assigned)"
        lines.append(
            f"  model {model.name} v{description.get('modelVersion', model.spec.version)}: "
            f"handler {model.spec.handler or '?'}, workers {len(workers)} "
            f"(min {description.get('minWorkers')}, max {description.get('maxWorkers')}), "
            f"batch size {description.get('batchSize')}, max batch delay {description.get('maxBatchDelay')} ms, "
            f"response timeout {description.get('responseTimeout')} s, device {device}"
        )
    logger.info("%s", "\n".join(lines))


async def _first(*aws: "asyncio.Future[Any]") -> set["asyncio.Future[Any]"]:
    done, _ = await asyncio.wait(set(aws), return_when=asyncio.FIRST_COMPLETED)
    return done


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until TorchServe cannot be kept alive (exit 1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    own_work_dir = settings.work_dir is None
    root = Path(tempfile.mkdtemp(prefix="kserve-torchserve-")) if settings.work_dir is None else settings.work_dir
    layout = Layout(root.resolve())
    try:
        return await _serve(settings, layout, stop)
    finally:
        if own_work_dir:
            shutil.rmtree(layout.root, ignore_errors=True)


async def _serve(settings: Settings, layout: Layout, stop: asyncio.Event) -> int:
    starting = asyncio.ensure_future(start_backend(settings, layout))
    stopped = asyncio.ensure_future(stop.wait())
    if starting not in await _first(starting, stopped):
        logger.info("stop requested during start-up")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StartupError):
            await starting
        return 0
    stopped.cancel()
    backend = starting.result()  # raises StartupError for __main__ to report

    registry = ModelRepository()
    for model in backend.models:
        registry.update(model)
    dataplane = TorchServeDataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)
    kserve_app.add_exception_handler(UpstreamError, upstream_error_handler)
    rest = LeanRESTServer(
        FASTAPI_APP_IMPORT_STRING, dataplane, extension, settings.http_port,
        grace_period=int(settings.grace_period_s),
    )
    rest.metrics = MetricsScraper(backend.metrics_url)
    # The hot routes skip FastAPI (fastpath.py); requests are counted whichever path answers.
    rest.config.app = CountRequests(FastPath(kserve_app, dataplane) if settings.fast_path else kserve_app)
    tasks: dict[str, asyncio.Future[Any]] = {"rest": asyncio.ensure_future(rest.start())}
    grpc_server = None
    if settings.enable_grpc:
        grpc_options = {
            "grpc_max_send_message_length": settings.grpc_max_send_message_length,
            "grpc_max_receive_message_length": settings.grpc_max_receive_message_length,
        }
        if settings.fast_path and not per_request_logging():
            grpc_server = LeanGRPCServer(settings.grpc_port, dataplane, extension, kwargs=grpc_options,
                                         grace_period=int(settings.grace_period_s), registry=registry)
        else:  # kserve's own, whose interceptor logs every call at DEBUG
            grpc_server = GRPCServer(
                settings.grpc_port, dataplane, extension, kwargs=grpc_options, grace_period=int(settings.grace_period_s)
            )
        tasks["grpc"] = asyncio.ensure_future(grpc_server.start(max_workers=settings.grpc_max_threads))
    tasks["supervisor"] = asyncio.ensure_future(backend.supervisor.run())
    tasks["stop"] = asyncio.ensure_future(stop.wait())
    logger.info(
        "serving %s on http port %d%s",
        ", ".join(m.name for m in backend.models),
        settings.http_port,
        f", grpc port {settings.grpc_port}" if grpc_server else "",
    )

    done = await _first(*tasks.values())
    exit_code = 0
    if tasks["supervisor"] in done and isinstance(tasks["supervisor"].exception(), TorchServeGaveUp):
        logger.error("%s", tasks["supervisor"].exception())
        exit_code = 1
    elif tasks["rest"] in done and tasks["rest"].exception() is not None:
        logger.error("HTTP server failed: %s", tasks["rest"].exception())
        exit_code = 1
    elif tasks["grpc"] in done if "grpc" in tasks else False:
        logger.error("gRPC server stopped unexpectedly: %s", tasks["grpc"].exception())
        exit_code = 1
    else:
        logger.info("shutting down: draining in-flight requests")

    # 1. Stop accepting and drain. uvicorn drains on its own after SIGTERM; otherwise tell it.
    rest._server.should_exit = True  # kserve keeps its uvicorn.Server private
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(tasks["rest"], settings.grace_period_s + 5)
    if grpc_server is not None and not tasks["grpc"].done():
        await grpc_server.stop(signal.SIGTERM)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await tasks["grpc"]
    # 2. Only now stop TorchServe: nothing can still be waiting on it.
    tasks["supervisor"].cancel()
    with contextlib.suppress(BaseException):
        await tasks["supervisor"]
    tasks["stop"].cancel()
    await backend.supervisor.stop()
    await backend.client.close()
    if rest.metrics is not None:
        await rest.metrics.close()
    logger.info("stopped (exit code %d)", exit_code)
    return exit_code
