"""TorchServe's management REST API for the models we serve: register, scale, set-default, unregister.

Through its REST API (not gRPC) because its status codes and its ``{"code", "type",
"message"}`` bodies are what our own management API answers with; its gRPC API folds
them into a few gRPC codes. Failures are ManagementError, worded as TorchServe words
them; TorchServe answers 507 (its remap of 413) when workers cannot start for memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import ManagementError, UpstreamError
from .client import TorchServeClient
from .supervisor import workers_ready

_READY_POLL_S = 0.25
Answer = tuple[int, dict[str, Any]]


def failure(status: int, body: dict[str, Any], fallback: str) -> ManagementError:
    message = str(body.get("message") or body.get("status") or fallback)
    return ManagementError(507 if status == 413 else status, message, body.get("type"))


class ModelAdmin:
    def __init__(self, client: TorchServeClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s  # for loading a model, and for its workers to become READY

    async def _call(self, method: str, path: str, params: dict[str, str] | None, what: str) -> Answer:
        try:
            status, body = await self.client.manage(method, path, params, timeout_s=self.timeout_s)
        except UpstreamError as exc:
            raise ManagementError(exc.http_status, exc.message) from None
        if status >= 300:
            raise failure(status, body, f"TorchServe could not {what}")
        return status, body

    async def register(self, file: str, name: str, version: str, batch_size: int, max_batch_delay: int,
                       min_workers: int, max_workers: int, response_timeout: int) -> None:
        """Register the model store entry ``file`` (whose manifest says ``version``) as ``name``, workers started."""
        await self._call("POST", "/models", {
            "url": file, "model_name": name, "batch_size": str(batch_size), "max_batch_delay": str(max_batch_delay),
            "initial_workers": str(min_workers), "response_timeout": str(response_timeout), "synchronous": "true",
        }, f"register model {name}")
        if max_workers != min_workers:
            await self.scale(name, version, min_workers, max_workers, True)

    async def scale(self, name: str, version: str | None, min_workers: int, max_workers: int,
                    synchronous: bool) -> Answer:
        path = f"/models/{name}" + (f"/{version}" if version else "")
        return await self._call("PUT", path, {"min_worker": str(min_workers), "max_worker": str(max_workers),
                                              "synchronous": "true" if synchronous else "false"},
                                f"scale model {name}")

    async def set_default(self, name: str, version: str) -> None:
        await self._call("PUT", f"/models/{name}/{version}/set-default", None, f"set the default of model {name}")

    async def unregister(self, name: str, version: str) -> None:
        try:
            await self._call("DELETE", f"/models/{name}/{version}", None, f"unregister model {name}")
        except ManagementError as exc:
            if exc.status != 404:  # 404: TorchServe lost it already (it restarted)
                raise

    async def wait_ready(self, name: str, version: str) -> None:
        """Until the version's workers are READY (TorchServe's own rule); ManagementError(500) after the timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if workers_ready(await self.client.describe(name, version)):
                    return
            except UpstreamError:
                pass
            if time.monotonic() > deadline:
                raise ManagementError(500, f"the workers of model {name} were not READY after {self.timeout_s:.0f}s "
                                           "(see TorchServe's log)")
            await asyncio.sleep(_READY_POLL_S)
