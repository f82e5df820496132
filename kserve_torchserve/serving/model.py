"""TorchServeModel: one kserve.Model per served model name, forwarding rows to TorchServe."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, Optional, Union

import kserve
from kserve.protocol.infer_type import InferRequest, InferResponse

from . import codec
from ..backend.client import TorchServeClient
from ..errors import UpstreamError
from ..config.model_config import ModelSpec


class TorchServeModel(kserve.Model):  # type: ignore[misc]
    def __init__(
        self,
        spec: ModelSpec,
        client: TorchServeClient,
        response_timeout_s: float,
        max_rows: int,
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.client = client
        self.response_timeout_s = response_timeout_s
        # TorchServe's job queue holds max_rows requests per model; a request with
        # more rows could never be queued whole, so it is refused up front.
        self.max_rows = max_rows
        self.ready = False

    def load(self) -> bool:
        # kserve calls load() when a request finds the model not ready; TorchServe owns
        # loading and the supervisor owns readiness, so this only reports it.
        return bool(self.ready)

    def stop(self) -> None:
        self.ready = False

    async def predict(
        self,
        payload: Union[Dict[str, Any], InferRequest],
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Union[Dict[str, Any], InferResponse]:
        predictions = await self._send_rows(self._rows(payload), self._predict_one)
        if isinstance(payload, InferRequest):
            return codec.v2_response(payload, self.name, predictions)
        return codec.v1_response(predictions)

    async def explain(
        self, payload: Union[Dict[str, Any], InferRequest], headers: Optional[Dict[str, str]] = None
    ) -> Dict[str, Any]:
        """v1 :explain -> the handler's explain path, one TorchServe request per instance."""
        return {"explanations": await self._send_rows(self._rows(payload), self._explain_one)}

    def _rows(self, payload: Union[Dict[str, Any], InferRequest]) -> list[codec.Row]:
        if not self.ready:
            raise UpstreamError(503, f"model {self.name} is not ready: TorchServe is starting or restarting")
        rows = codec.v2_rows(payload) if isinstance(payload, InferRequest) else codec.v1_rows(payload)
        if len(rows) > self.max_rows:
            raise UpstreamError(
                413,
                f"request has {len(rows)} instances but model {self.name} queues at most {self.max_rows}: "
                "split the request, or raise TS_JOB_QUEUE_SIZE",
            )
        return rows

    async def _send_rows(
        self, rows: list[codec.Row], send: Callable[[codec.Row], Awaitable[bytes]]
    ) -> list[Any]:
        """Send every row at once so TorchServe's batcher can group them; keep answers in order."""
        if len(rows) == 1:  # the common case: skip gather's task overhead
            return [codec.decode_prediction(await send(rows[0]))]
        results = await asyncio.gather(*(send(row) for row in rows), return_exceptions=True)
        for index, result in enumerate(results):
            if isinstance(result, UpstreamError):
                raise UpstreamError(result.http_status, f"instance {index}: {result.message}")
            if isinstance(result, BaseException):
                raise result
        return [codec.decode_prediction(raw) for raw in results]  # type: ignore[arg-type]

    async def _explain_one(self, row: codec.Row) -> bytes:
        return await self.client.explain(self.name, row, self.response_timeout_s)

    async def _predict_one(self, row: codec.Row) -> bytes:
        # No version: TorchServe's default version answers, as for its own /predictions/{m}.
        return await self.client.predict(self.name, None, row, self.response_timeout_s)
