"""TorchServe's management REST API for the models we serve: register, scale, set-default, unregister.

Through its REST API (not gRPC) because its status codes and its ``{"code", "type",
"message"}`` bodies are what our own management API answers with; its gRPC API folds
them into a few gRPC codes. Failures are ManagementError, worded as TorchServe words
them; TorchServe answers 507 (its remap of 413) when workers cannot start for memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from ..config.properties import LOOPBACK
from ..errors import ManagementError, UpstreamError
from . import http_pool
from .auth import Metadata, TokenUnavailable
from .client import TOKEN_REJECTED, TorchServeClient
from .supervisor import workers_ready

_READY_POLL_S = 0.25
Answer = tuple[int, dict[str, Any]]


def failure(status: int, body: dict[str, Any], fallback: str) -> ManagementError:
    message = str(body.get("message") or body.get("status") or fallback)
    return ManagementError(507 if status == 413 else status, message, body.get("type"))


class ModelAdmin:
    def __init__(self, client: TorchServeClient, management_url: str, timeout_s: float) -> None:
        self.client = client  # its tokens, and describe() for readiness
        url = urlsplit(management_url)
        self._pool = http_pool.Pool(url.hostname or LOOPBACK, url.port or 80, max_idle=4)
        self.timeout_s = timeout_s  # for loading a model, and for its workers to become READY

    def close(self) -> None:
        self._pool.close()

    async def manage(
        self, method: str, path: str, params: Mapping[str, str] | None = None, timeout_s: float = 600.0
    ) -> tuple[int, dict[str, Any]]:
        """One call to TorchServe's management REST API: (status, JSON body), as TorchServe answers.

        Used for what changes TorchServe's models (register, unregister, scale, set-default),
        so that its status codes and messages reach our management API unchanged.
        UpstreamError(503) when TorchServe cannot be reached.
        """
        query = ("?" + urlencode(params)) if params else ""
        for attempt in (1, 2):
            try:
                metadata: Metadata = await self.client.tokens.metadata("management")
            except TokenUnavailable as exc:
                raise UpstreamError(503, f"TorchServe is not ready to manage models: {exc}") from None
            try:
                status, body = await self._pool.request(method, path + query, b"", dict(metadata), timeout_s)
            except http_pool.ResponseTimeout:
                raise UpstreamError(504, f"TorchServe did not answer {method} {path} within {timeout_s:.0f}s") from None
            except http_pool.TransportError as exc:
                raise UpstreamError(503, f"TorchServe is unavailable, retry later: {exc}") from None
            if attempt == 1 and status in (400, 401, 403) and TOKEN_REJECTED.encode() in body:
                await self.client.tokens.on_rejected("management", metadata)
                continue
            try:
                parsed = json.loads(body) if body else {}
            except ValueError:
                parsed = {"message": body.decode("utf-8", "replace")[:500]}
            return status, parsed if isinstance(parsed, dict) else {"items": parsed}
        raise AssertionError("unreachable")

    async def _call(self, method: str, path: str, params: dict[str, str] | None, what: str) -> Answer:
        try:
            status, body = await self.manage(method, path, params, timeout_s=self.timeout_s)
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
