"""TorchServeModel: one served model version, forwarding rows to TorchServe.

One object per (name, version). Which version answers a request is management's
choice (``management/registry.py``); this class only serves the version it is. It
counts its requests in flight, so that unregistering it can wait for them (drain).
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional, Union

import kserve
from kserve.protocol.infer_type import InferRequest, InferResponse

from ..backend.batcher import Batcher
from ..backend.client import TorchServeClient
from ..config.model_config import ModelSpec
from ..errors import RETRY_AFTER_S, UpstreamError
from . import codec

# The request header that addresses one version (a versioned route sets it too), and the
# response header that says which version answered.
VERSION_HEADER = "x-model-version"


class TorchServeModel(kserve.Model):  # type: ignore[misc]
    direct_predict = True  # predict() is the whole answer: the fast paths may call it without Model.__call__

    def __init__(
        self,
        spec: ModelSpec,
        client: TorchServeClient,
        response_timeout_s: float,
        max_rows: int,
        ts_version: str | None = None,
        per_request: bool = True,
        batching: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.version = spec.version
        # The version TorchServe knows it by: the same, except for a model reloaded in place,
        # whose new files are registered beside the old ones under a version of their own.
        self.ts_version = ts_version or spec.version
        self.client = client
        self.response_timeout_s = response_timeout_s
        # TorchServe's job queue holds max_rows requests per model; a request with
        # more rows could never be queued whole, so it is refused up front.
        self.max_rows = max_rows
        # One TorchServe request per client request, split into rows by our envelope in the
        # worker (True), or one per row (False); benchmarks/README.md has the figures.
        self.per_request = per_request
        # (batch size, max batch delay in ms, workers): batch predictions here rather than in TorchServe
        # (backend/batcher.py), TorchServe then registering it with delay 0; None: TorchServe batches, if at all.
        self.batcher: Batcher | None = None
        if batching is not None and per_request:
            size, delay_ms, workers = batching
            # TorchServe's queue held max_rows requests; each of its requests is a batch now, and as
            # many batches may wait here.
            self.batcher = Batcher(spec.name, self._send_batch, size, delay_ms / 1000, workers + 1,
                                   client.max_request_bytes, max_rows * size)
        self.ready = False
        # Why its workers could not load (TorchServe's words), when they could not: the model is
        # then not ready, and not retried until TorchServe restarts.
        self.failure: str | None = None
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def load(self) -> bool:
        # kserve calls load() when a request finds the model not ready; TorchServe owns
        # loading and the supervisor owns readiness, so this only reports it.
        return bool(self.ready)

    def stop(self) -> None:
        self.ready = False

    def check_ready(self) -> None:
        """UpstreamError(503) saying why, unless the model can take requests."""
        if self.ready:
            return
        if self.failure is not None:
            raise UpstreamError(503, f"model {self.name} is not served: {self.failure}")
        raise UpstreamError(503, f"model {self.name} is not ready: TorchServe is starting, restarting or not "
                                 "answering; retry later", retry_after_s=RETRY_AFTER_S)

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (or ``timeout_s`` passed); True if drained."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def predict(
        self,
        payload: Union[Dict[str, Any], InferRequest],
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Union[Dict[str, Any], InferResponse]:
        predictions = await self._send_rows(self._rows(payload), "predictions")
        if isinstance(payload, InferRequest):
            return codec.v2_response(payload, self.name, predictions, self.version)
        return codec.v1_response(predictions)

    async def predict_v1_bytes(
        self, body: bytes, headers: Optional[Dict[str, str]] = None, response_headers: Optional[Dict[str, str]] = None
    ) -> bytes:
        """A v1 request as the client sent it -> the v1 answer's body, neither parsed here.

        Our envelope makes the rows in the worker and answers each as JSON, which is spliced
        into ``{"predictions": [...]}``: this process's work does not grow with the instances.
        A body over TorchServe's max_request_size is parsed and split across requests instead.
        """
        self.check_ready()
        if not self.per_request or not self.client.fits(len(body)):
            return codec.to_json(await self.predict(codec.parse_v1(body)))
        self.in_flight += 1
        self._idle.clear()
        try:
            answers = await self.client.send_v1("predictions", self.name, self.ts_version, body,
                                                self.response_timeout_s, self.batcher)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
        return codec.v1_answer(answers)

    async def _send_batch(self, frame: bytes) -> bytes:
        return await self.client.send_frame("predictions", self.name, self.ts_version, frame, self.response_timeout_s)

    def set_workers(self, workers: int) -> None:
        """The workers TorchServe runs for this version changed: so do the batches in flight at once."""
        if self.batcher is not None:
            self.batcher.set_slots(workers + 1)

    async def explain(
        self, payload: Union[Dict[str, Any], InferRequest], headers: Optional[Dict[str, str]] = None
    ) -> Dict[str, Any]:
        """v1 :explain -> the handler's explain path, one TorchServe request per instance."""
        return {"explanations": await self._send_rows(self._rows(payload), "explanations")}

    def _rows(self, payload: Union[Dict[str, Any], InferRequest]) -> list[codec.Row]:
        self.check_ready()
        rows = codec.v2_rows(payload) if isinstance(payload, InferRequest) else codec.v1_rows(payload)
        if not self.per_request and len(rows) > self.max_rows:
            raise UpstreamError(
                413,
                f"request has {len(rows)} instances but model {self.name} queues at most {self.max_rows}: "
                "split the request, or raise TS_JOB_QUEUE_SIZE",
            )
        return rows

    async def _send_rows(self, rows: list[codec.Row], verb: str) -> list[Any]:
        """Every row to TorchServe (in one request, or one each so its batcher can group them); answers in order."""
        self.in_flight += 1
        self._idle.clear()
        try:
            if self.per_request:
                answers = await self.client.send_rows(verb, self.name, self.ts_version, rows, self.response_timeout_s,
                                                      self.batcher if verb == "predictions" else None)
                return [codec.decode_prediction(raw) for raw in answers]
            return await self._send_each(rows, verb)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def _send_each(self, rows: list[codec.Row], verb: str) -> list[Any]:
        # Always the explicit version: TorchServe's own default plays no part in routing.
        send = self.client.predict if verb == "predictions" else self.client.explain
        if len(rows) == 1:  # the common case: skip gather's task overhead
            return [codec.decode_prediction(await send(self.name, self.ts_version, rows[0], self.response_timeout_s))]
        results = await asyncio.gather(*(send(self.name, self.ts_version, row, self.response_timeout_s)
                                         for row in rows), return_exceptions=True)
        for index, result in enumerate(results):
            if isinstance(result, UpstreamError):
                raise UpstreamError(result.http_status, f"instance {index}: {result.message}")
            if isinstance(result, BaseException):
                raise result
        return [codec.decode_prediction(raw) for raw in results]  # type: ignore[arg-type]
