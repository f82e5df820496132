"""The whole server's life in one asyncio loop: ``startup()`` -> ``main_loop()`` -> ``shutdown()``.

We drive kserve's RESTServer and GRPCServer ourselves instead of calling
``ModelServer.start()``, because its shutdown unloads models from inside a signal
handler while gRPC requests may still be in flight, and it has no place for a
supervised child process. Signal handlers only set an event (uvicorn's style); the
phases do the work in a fixed order:

- startup: storage -> model store -> config.properties -> TorchServe ready -> the
  KServe fronts (REST, gRPC) listening;
- main_loop: until SIGTERM/SIGINT, TorchServe given up on, or a front failing;
- shutdown: stop accepting -> drain HTTP and gRPC -> stop TorchServe -> exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import app as kserve_app

from .backend.auth import TokenSource
from .backend.client import TorchServeClient
from .backend.configure import write_config
from .backend.process import Layout, TorchServeProcess
from .backend.supervisor import RestartPolicy, Supervisor
from .backend.worker_log import LoadFailures
from .config.cpus import describe_threads, threads_per_worker
from .config.properties import LOOPBACK
from .config.settings import Settings
from .errors import ManagementError, StartupError, TorchServeGaveUp, UpstreamError
from .management.service import Management, build_management
from .model_store.build import build_model_store
from .model_store.fetch_child import fetch_in_child
from .serving.grpc_fastpath import LeanGRPCServer
from .serving.metrics import CountRequests, MetricsScraper
from .serving.rest import (
    LeanRESTServer, TorchServeDataPlane, management_error_handler, per_request_logging, upstream_error_handler,
)
from .serving import hot_route
from .serving.rest_fastpath import FastPath
from .summary import summary

logger = logging.getLogger(__name__)


async def _first(*aws: "asyncio.Future[Any]") -> set["asyncio.Future[Any]"]:
    done, _ = await asyncio.wait(set(aws), return_when=asyncio.FIRST_COMPLETED)
    return done


class Server:
    """One server: the TorchServe it supervises and the KServe fronts in front of it."""

    def __init__(self, settings: Settings, layout: Layout, stop: asyncio.Event) -> None:
        self.settings = settings
        self.layout = layout
        self.stop = stop
        self.client: TorchServeClient | None = None
        self.supervisor: Supervisor | None = None
        self.management: Management | None = None
        self.metrics_url = ""
        self.max_request_bytes: int | None = None  # TorchServe's max_request_size, once configured
        self.rest: LeanRESTServer | None = None
        self.grpc: LeanGRPCServer | None = None
        self.tasks: dict[str, asyncio.Future[Any]] = {}
        self.signal_name = ""  # the signal that asked us to stop, for the log

    async def serve(self) -> int:
        """Exit code: 0 after SIGTERM/SIGINT, 1 when TorchServe cannot be kept alive or a front fails."""
        if not await self.startup():
            return 0
        exit_code = 1
        try:
            exit_code = await self.main_loop()
        finally:
            await self.shutdown(exit_code)
        return exit_code

    # -- startup ----------------------------------------------------------------------------

    async def startup(self) -> bool:
        """TorchServe ready and the fronts listening; False when a stop came first.

        StartupError (for __main__ to report) when something cannot be served.
        """
        starting = asyncio.ensure_future(self._start_torchserve())
        stopped = asyncio.ensure_future(self.stop.wait())
        if starting not in await _first(starting, stopped):
            logger.info("stop requested during start-up")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StartupError):
                await starting
            return False
        stopped.cancel()
        starting.result()  # raises StartupError
        self._start_fronts()
        return True

    async def _start_torchserve(self) -> None:
        """Storage -> model store -> config.properties -> TorchServe ready with every model."""
        settings, layout = self.settings, self.layout
        storage_dir = await fetch_in_child(
            settings.storage_uri, layout.root / "download", settings.max_unpacked_bytes, settings.ts.log_level
        )
        store = await asyncio.to_thread(
            build_model_store, storage_dir, layout.model_store, settings.model_name, settings.ts.load_models,
            settings.allow_no_models,
        )
        per_request = not settings.request_per_instance
        props = write_config(settings.ts, layout, store, storage_dir, envelope=per_request)
        tokens = TokenSource(
            layout.key_file,
            props["management_address"],
            enabled=props.get("disable_token_authorization", "false").strip().lower() != "true",
        )
        client = TorchServeClient(
            f"{LOOPBACK}:{props['grpc_inference_port']}", f"{LOOPBACK}:{props['grpc_management_port']}", tokens,
            inference_url=props["inference_address"], max_request_bytes=int(props["max_request_size"]),
        )
        load_failures = LoadFailures()  # why a model's workers could not load, from TorchServe's lines
        management = build_management(
            settings, client, layout.root, layout.model_store, storage_dir if storage_dir.is_dir() else None, props,
            backend_up=lambda: supervisor.available, latency_logging=per_request_logging(), per_request=per_request,
            front_batching=settings.front_batching,
            load_failure=load_failures.wait_reason,
        )
        registrations = management.operations.add_startup(store.specs, settings.model_api.traffic)
        torch_threads = threads_per_worker(sum(r.min_workers for r in registrations))

        def new_process() -> TorchServeProcess:
            process = TorchServeProcess(layout, torch_threads=torch_threads, grace_s=settings.grace_period_s,
                                        envelope=per_request)
            process.on_line = load_failures.feed
            return process

        supervisor = Supervisor(
            process_factory=new_process,
            client=client,
            models=management.registry.versions,
            startup_timeout_s=settings.startup_timeout_s,
            grace_period_s=settings.grace_period_s,
            health_interval_s=settings.health_interval_s,
            policy=RestartPolicy(max_restarts=settings.max_restarts, window_s=settings.restart_window_s),
            on_restart=tokens.reset,
            on_started=management.operations.restore,  # TorchServe starts empty: give it every model
            on_health_round=client.oom.mark,
        )
        try:
            await supervisor.start()
            logger.info("%s", await summary(settings, client, management, props,
                                            describe_threads(torch_threads, os.environ)))
        except BaseException:
            await supervisor.stop()
            await client.close()
            raise
        self.client, self.supervisor, self.management = client, supervisor, management
        self.metrics_url = props["metrics_address"]
        # The front refuses bodies TorchServe would refuse, before reading them (TS_* or config.properties).
        self.max_request_bytes = int(props["max_request_size"])

    def _start_fronts(self) -> None:
        """kserve's REST and gRPC servers on our registry and DataPlane, and the supervisor's loop."""
        settings, management, supervisor = self.settings, self.management, self.supervisor
        assert supervisor is not None and management is not None
        registry = management.registry
        # Ready: TorchServe up and every model version ready, except those whose workers could not load
        # (they never will, until fixed: counting them would keep the whole pod out of service, and its
        # other models with it; they answer 503 with the reason instead).
        dataplane = TorchServeDataPlane(
            registry, ready_check=lambda: supervisor.up and all(m.ready or m.failure is not None
                                                                for m in registry.versions())
        )
        kserve_app.add_exception_handler(UpstreamError, upstream_error_handler)
        kserve_app.add_exception_handler(ManagementError, management_error_handler)
        rest = LeanRESTServer(
            FASTAPI_APP_IMPORT_STRING, dataplane, management.repository, settings.http_port,
            grace_period=int(settings.grace_period_s),
        )
        rest.metrics = MetricsScraper(self.metrics_url)
        rest.routes = management.api.routes()
        # The hot routes skip FastAPI (rest_fastpath.py) and, for a plain request, uvicorn's ASGI cycle too
        # (hot_route.py); requests are counted whichever path answers.
        fastpath = FastPath(kserve_app, dataplane, fast=settings.fast_path, max_body_bytes=self.max_request_bytes)
        rest.config.app = CountRequests(fastpath)
        hot_route.install(rest.config, fastpath)
        rest.on_signal(self._heard)
        self.rest = rest
        self.tasks["rest"] = asyncio.ensure_future(rest.start())
        if settings.enable_grpc:
            grpc_options = {
                "grpc_max_send_message_length": settings.grpc_max_send_message_length,
                "grpc_max_receive_message_length": settings.grpc_max_receive_message_length,
            }
            # kserve's own ModelInfer path (its interceptor logs every call) at DEBUG or without the fast path.
            self.grpc = LeanGRPCServer(settings.grpc_port, dataplane, management.repository, kwargs=grpc_options,
                                       grace_period=int(settings.grace_period_s), registry=registry,
                                       fast=settings.fast_path and not per_request_logging(),
                                       handlers=management.grpc_handlers)
            self.tasks["grpc"] = asyncio.ensure_future(self.grpc.start(max_workers=settings.grpc_max_threads))
        self.tasks["supervisor"] = asyncio.ensure_future(supervisor.run())
        self.tasks["stop"] = asyncio.ensure_future(self.stop.wait())
        logger.info(
            "serving %s on http port %d%s",
            ", ".join(sorted(registry.models)) or "no models yet",
            settings.http_port,
            f", grpc port {settings.grpc_port}" if self.grpc else "",
        )

    def _heard(self, signal_name: str) -> None:
        self.signal_name = signal_name  # for the log
        self.stop.set()

    # -- main loop --------------------------------------------------------------------------

    async def main_loop(self) -> int:
        """Wait for the first of: a stop signal, the supervisor giving up, a front failing."""
        tasks = self.tasks
        done = await _first(*tasks.values())
        if tasks["supervisor"] in done and isinstance(tasks["supervisor"].exception(), TorchServeGaveUp):
            logger.error("%s", tasks["supervisor"].exception())
            return 1
        if tasks["rest"] in done and tasks["rest"].exception() is not None:
            logger.error("HTTP server failed: %s", tasks["rest"].exception())
            return 1
        if "grpc" in tasks and tasks["grpc"] in done:
            logger.error("gRPC server stopped unexpectedly: %s", tasks["grpc"].exception())
            return 1
        logger.info("%s received: no new requests; draining those in flight", self.signal_name or "stop signal")
        return 0

    # -- shutdown ---------------------------------------------------------------------------

    async def shutdown(self, exit_code: int) -> None:
        """Stop accepting, drain both fronts, and only then stop TorchServe; one line per step, with its time."""
        tasks = self.tasks
        assert self.rest is not None and self.supervisor is not None and self.client is not None
        began = time.monotonic()
        # 1. Stop accepting and drain, both fronts at once. uvicorn drains on its own after a signal;
        # otherwise tell it.
        self.rest._server.should_exit = True

        async def drain_http() -> None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(tasks["rest"], self.settings.grace_period_s + 5)
            logger.info("HTTP server stopped: requests in flight answered (%.1fs)", time.monotonic() - began)

        async def drain_grpc() -> None:
            if self.grpc is None or tasks["grpc"].done():
                return
            await self.grpc.stop(signal.SIGTERM)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await tasks["grpc"]
            logger.info("gRPC server stopped: calls in flight answered (%.1fs)", time.monotonic() - began)

        await asyncio.gather(drain_http(), drain_grpc())
        # 2. Only now stop TorchServe: nothing can still be waiting on it.
        tasks["supervisor"].cancel()
        with contextlib.suppress(BaseException):
            await tasks["supervisor"]
        tasks["stop"].cancel()
        await self.supervisor.stop()
        await self.client.close()
        if self.management is not None:
            self.management.operations.admin.close()
        if self.rest.metrics is not None:
            await self.rest.metrics.close()
        logger.info("stopped in %.1fs (exit code %d)", time.monotonic() - began, exit_code)


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until TorchServe cannot be kept alive (exit 1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # handlers only set a flag; the phases do the work
    own_work_dir = settings.work_dir is None
    root = Path(tempfile.mkdtemp(prefix="kserve-torchserve-")) if settings.work_dir is None else settings.work_dir
    layout = Layout(root.resolve())
    try:
        return await Server(settings, layout, stop).serve()
    finally:
        if own_work_dir:
            shutil.rmtree(layout.root, ignore_errors=True)
