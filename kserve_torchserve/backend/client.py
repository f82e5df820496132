"""Async client for TorchServe: predictions and explanations over its inference REST
API (http_pool.py says why), health and model descriptions over its gRPC APIs.

Connections are kept for the whole process (a channel per call cost the predecessor
dearly), every call has a deadline, and TorchServe's errors become UpstreamError with
the HTTP/gRPC status a KServe client should see.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any, Mapping, Sequence
from urllib.parse import quote, urlsplit

import grpc
from google.protobuf import empty_pb2

from . import grpc_stubs, http_pool
from .batcher import Batcher
from .auth import KeyKind, Metadata, TokenSource, TokenUnavailable
from .failures import map_rest_error, map_rpc_error
from .oom import OomKills
from ..errors import RETRY_AFTER_S, UpstreamError
from ..model_store.handlers import framing
from ..config.properties import LOOPBACK

TOKEN_REJECTED = "Token Authorization failed"
_DEADLINE_MARGIN_S = 5.0
_MAX_MESSAGE = 2**31 - 1  # size limits are TorchServe's (max_request_size) and kserve's, not the channel's


@functools.lru_cache(maxsize=1024)
def _path(verb: str, model: str, version: str | None) -> str:
    """TorchServe's URL path for a model: cached, since quoting showed up in profiles of small requests."""
    return f"/{verb}/{quote(model, safe='')}" + (f"/{quote(version, safe='')}" if version else "")

class TorchServeClient:
    def __init__(
        self, inference_target: str, management_target: str, tokens: TokenSource, inference_url: str = "",
        max_request_bytes: int | None = None,
    ) -> None:
        stubs = grpc_stubs.load()
        self._mpb = stubs.management_pb2
        options = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]
        self._inference_channel = grpc.aio.insecure_channel(inference_target, options=options)
        self._management_channel = grpc.aio.insecure_channel(management_target, options=options)
        self._inference = stubs.inference_pb2_grpc.InferenceAPIsServiceStub(self._inference_channel)
        self._management = stubs.management_pb2_grpc.ManagementAPIsServiceStub(self._management_channel)
        self.tokens = tokens
        url = urlsplit(inference_url)
        self._rest = http_pool.Pool(url.hostname or LOOPBACK, url.port or 80)
        self._multipart = http_pool.Multipart()
        # TorchServe's max_request_size: a bigger request is refused here, with a clear
        # 413, rather than cut off by Netty mid-write (which reads as a dropped connection).
        self._max_request_bytes = max_request_bytes
        self.oom = OomKills()  # tells a worker killed for memory from a crash; marked by the supervisor

    async def close(self) -> None:
        await self._inference_channel.close()
        await self._management_channel.close()
        self._rest.close()

    async def _call(self, kind: KeyKind, method: Any, request: Any, timeout: float, model: str) -> Any:
        try:
            metadata: Metadata = await self.tokens.metadata(kind)
        except TokenUnavailable as exc:
            raise UpstreamError(503, f"TorchServe is not ready to serve model {model}: {exc}") from None
        try:
            return await method(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            if not (err.code() == grpc.StatusCode.PERMISSION_DENIED and TOKEN_REJECTED in (err.details() or "")):
                raise map_rpc_error(err, model) from None
        # Rejected at TorchServe's auth interceptor, so the model never saw it: safe to retry once.
        try:
            metadata = await self.tokens.on_rejected(kind, metadata)
            return await method(request, metadata=metadata, timeout=timeout)
        except TokenUnavailable as exc:
            raise UpstreamError(503, f"TorchServe rejected our token for model {model}: {exc}") from None
        except grpc.aio.AioRpcError as err:
            raise map_rpc_error(err, model) from None

    async def _post(
        self, verb: str, model: str, version: str | None, row: Mapping[str, bytes], response_timeout_s: float
    ) -> bytes:
        """One row through TorchServe's REST API: its answer, or the UpstreamError a client should see.

        Our deadline runs a little past TorchServe's own responseTimeout so that
        TorchServe's answer (and its message) arrives first.
        """
        content_type, body = self._multipart.encode(row)
        if self._max_request_bytes is not None and len(body) > self._max_request_bytes:
            raise UpstreamError(
                413, f"an instance for model {model} is {len(body)} bytes, over TorchServe's max_request_size of "
                f"{self._max_request_bytes}: raise TS_MAX_REQUEST_SIZE or send smaller inputs"
            )
        return await self._send(verb, model, version, content_type, body, response_timeout_s)

    async def _send(
        self, verb: str, model: str, version: str | None, content_type: str, body: bytes, response_timeout_s: float
    ) -> bytes:
        path = _path(verb, model, version)
        try:
            metadata: Metadata = await self.tokens.metadata("inference")
        except TokenUnavailable as exc:
            raise UpstreamError(503, f"TorchServe is not ready to serve model {model}: {exc}") from None
        for attempt in (1, 2):
            headers = {"Content-Type": content_type, **dict(metadata)}
            started = time.monotonic()
            try:
                status, answer = await self._rest.request(
                    "POST", path, body, headers, response_timeout_s + _DEADLINE_MARGIN_S
                )
            except http_pool.ResponseTimeout:
                raise UpstreamError(
                    504, f"model {model} did not answer in time ({response_timeout_s + _DEADLINE_MARGIN_S:.0f}s); "
                    "raise the model's responseTimeout (TS_DEFAULT_RESPONSE_TIMEOUT) or send smaller requests"
                ) from None
            except http_pool.TransportError as exc:
                raise UpstreamError(503, f"model {model} is unavailable, retry later: {exc}",
                                    retry_after_s=RETRY_AFTER_S) from None
            if status < 300:
                return answer
            if attempt == 1 and status in (400, 401, 403) and TOKEN_REJECTED.encode() in answer:
                # Rejected at TorchServe's auth handler, so the model never saw it: safe to retry once.
                try:
                    metadata = await self.tokens.on_rejected("inference", metadata)
                except TokenUnavailable as exc:
                    raise UpstreamError(503, f"TorchServe rejected our token for model {model}: {exc}") from None
                continue
            raise map_rest_error(status, answer, model, time.monotonic() - started, response_timeout_s,
                                 explaining=verb == "explanations", oom_recent=self.oom.recent)
        raise AssertionError("unreachable")

    @property
    def max_request_bytes(self) -> int | None:
        """TorchServe's max_request_size, which no request of ours may exceed."""
        return self._max_request_bytes

    async def send_frame(self, verb: str, model: str, version: str | None, frame: bytes,
                         response_timeout_s: float) -> bytes:
        """One frame of ours (rows, v1, many) to TorchServe: its answer, or the UpstreamError a client should see."""
        return await self._send(verb, model, version, framing.CONTENT_TYPE, frame, response_timeout_s)

    async def _exchange(self, verb: str, model: str, version: str | None, frame: bytes, response_timeout_s: float,
                        batcher: Batcher | None) -> bytes:
        """A client request's frame, alone or batched with others' (backend/batcher.py): the answers to its rows."""
        if batcher is None:
            return await self.send_frame(verb, model, version, frame, response_timeout_s)
        status, raw = await batcher.submit(frame)
        if status >= 300:  # refused alone in the batch: the words a request of its own would get
            raise map_rest_error(status, raw, model, explaining=verb == "explanations")
        return raw

    def frames(self, rows: Sequence[Mapping[str, bytes]], model: str) -> list[tuple[int, bytes]]:
        """Rows packed into frames no bigger than TorchServe's max_request_size: (first row, frame)."""
        limit = self._max_request_bytes or (1 << 62)
        frames: list[tuple[int, bytes]] = []
        start, size = 0, 8
        for index, row in enumerate(rows):
            row_size = 2 + sum(6 + len(name.encode("utf-8")) + len(value) for name, value in row.items())
            if row_size + 8 > limit:
                raise UpstreamError(
                    413, f"instance {index}: an instance for model {model} is {row_size} bytes, over TorchServe's "
                    f"max_request_size of {limit}: raise TS_MAX_REQUEST_SIZE or send smaller inputs")
            if size + row_size > limit:
                frames.append((start, framing.pack_rows(rows[start:index])))
                start, size = index, 8
            size += row_size
        frames.append((start, framing.pack_rows(rows[start:])))
        return frames

    async def send_rows(
        self, verb: str, model: str, version: str | None, rows: Sequence[Mapping[str, bytes]], response_timeout_s: float,
        batcher: Batcher | None = None,
    ) -> list[bytes]:
        """Every row of one client request in one TorchServe request (a few, past max_request_size), answered
        per row by our request envelope in the worker; a row's own status fails the request naming the row.
        ``batcher``: one frame may go batched with other clients' (several go on their own)."""
        chunks = self.frames(rows, model)
        if len(chunks) > 1:
            batcher = None
        sent = [self._exchange(verb, model, version, frame, response_timeout_s, batcher) for _, frame in chunks]
        answers = [await sent[0]] if len(sent) == 1 else await asyncio.gather(*sent)
        bodies = [body for (first, _), raw in zip(chunks, answers) for body, _ in self._rows(raw, first, model, verb)]
        if len(bodies) != len(rows):
            raise UpstreamError(500, f"model {model} answered {len(bodies)} rows for {len(rows)}")
        return bodies

    def fits(self, size: int) -> bool:
        """Whether a body of ``size`` bytes fits TorchServe's max_request_size in one frame."""
        return self._max_request_bytes is None or size + 4 <= self._max_request_bytes

    async def send_v1(self, verb: str, model: str, version: str | None, body: bytes,
                      response_timeout_s: float, batcher: Batcher | None = None) -> list[tuple[bytes, bool]]:
        """A v1 body as the client sent it, unparsed (our envelope makes the rows in the worker):
        each row's answer and whether it is JSON. A body the client got wrong is a 400 with the worker's words.
        ``batcher``: it may go batched with other clients' requests."""
        raw = await self._exchange(verb, model, version, framing.pack_v1(body), response_timeout_s, batcher)
        return self._rows(raw, 0, model, verb)

    @staticmethod
    def _rows(raw: bytes, first: int, model: str, verb: str) -> list[tuple[bytes, bool]]:
        try:
            unpacked = framing.unpack_answers(raw)
        except framing.FrameError:
            raise UpstreamError(500, f"model {model} answered without our request envelope: is TorchServe's "
                                     "service_envelope changed?") from None
        out = []
        for index, (status, phrase, body, is_json) in enumerate(unpacked, start=first):
            if status >= 300:
                error = map_rest_error(status, phrase.encode() or body, model, explaining=verb == "explanations")
                raise UpstreamError(error.http_status, f"instance {index}: {error.message}")
            out.append((body, is_json))
        return out

    async def predict(
        self, model: str, version: str | None, row: Mapping[str, bytes], response_timeout_s: float
    ) -> bytes:
        """One row through the handler's predict path (TorchServe's /predictions)."""
        return await self._post("predictions", model, version, row, response_timeout_s)

    async def explain(
        self, model: str, version: str | None, row: Mapping[str, bytes], response_timeout_s: float
    ) -> bytes:
        """One row through the handler's explain path (TorchServe's /explanations; gRPC has none)."""
        return await self._post("explanations", model, version, row, response_timeout_s)

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when TorchServe answers Ping with status Healthy."""
        try:
            response = await self._call("inference", self._inference.Ping, empty_pb2.Empty(), timeout, "-")
        except UpstreamError:
            return False
        try:
            return json.loads(response.health).get("status") == "Healthy"  # type: ignore[no-any-return]
        except ValueError:
            return False

    async def describe(self, model: str, version: str | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        request = self._mpb.DescribeModelRequest(model_name=model, model_version=version or "")
        response = await self._call("management", self._management.DescribeModel, request, timeout, model)
        return json.loads(response.msg)  # type: ignore[no-any-return]
