"""Async client for TorchServe's gRPC inference and management APIs.

One grpc.aio channel per API for the whole process (a channel per call cost the
predecessor dearly), a deadline on every call, and TorchServe's errors turned into
UpstreamError with the HTTP/gRPC status a KServe client should see.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

import grpc
import httpx
from google.protobuf import empty_pb2

from . import protos
from .auth import KeyKind, Metadata, TokenSource, TokenUnavailable
from .errors import UpstreamError

_TOKEN_REJECTED = "Token Authorization failed"
_DEADLINE_MARGIN_S = 5.0
_MAX_MESSAGE = 2**31 - 1  # size limits are TorchServe's (max_request_size) and kserve's, not the channel's


def _clean(details: str | None) -> str:
    # TorchServe appends the Java exception class on a second line; users need the first.
    return (details or "").split("\norg.pytorch.serve", 1)[0].strip()


def map_rpc_error(
    err: grpc.aio.AioRpcError, model: str, elapsed_s: float = 0.0, response_timeout_s: float | None = None
) -> UpstreamError:
    """TorchServe's gRPC status -> the error our clients get, with a message that says what to do."""
    code, details = err.code(), err.details() or ""
    message = _clean(details)
    if message == "Worker died.":
        # TorchServe kills a worker that exceeds responseTimeout and says only this; the
        # time taken tells a timeout from a crash.
        if response_timeout_s is not None and elapsed_s >= response_timeout_s:
            return UpstreamError(
                504, f"model {model} did not answer within its responseTimeout of {response_timeout_s:.0f}s "
                "(TorchServe restarted the worker); raise TS_DEFAULT_RESPONSE_TIMEOUT or send smaller requests"
            )
        return UpstreamError(500, f"model {model} failed: its TorchServe worker died (see TorchServe's log)")
    if "ModelNotFoundException" in details or "ModelVersionNotFoundException" in details or code == grpc.StatusCode.NOT_FOUND:
        return UpstreamError(404, f"TorchServe does not serve model {model}: {message}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return UpstreamError(400, f"model {model} rejected the input: {message}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamError(
            504, f"model {model} did not answer in time: {message or 'deadline exceeded'}; "
            "raise the model's responseTimeout (TS_DEFAULT_RESPONSE_TIMEOUT) or send smaller requests"
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return UpstreamError(
            413, f"request for model {model} is too large for TorchServe: {message}; "
            "raise TS_MAX_REQUEST_SIZE / TS_MAX_RESPONSE_SIZE or send smaller inputs"
        )
    if message == "Prediction failed":
        # TorchServe's answer (with 503) when a handler raised: a bug in the handler, not overload.
        return UpstreamError(500, f"model {model} failed: its handler raised an error (see TorchServe's MODEL_LOG lines)")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.PERMISSION_DENIED) or (
        "has no worker" in details
    ):
        return UpstreamError(503, f"model {model} is unavailable or overloaded, retry later: {message or code.name}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return UpstreamError(501, f"model {model}: {message}")
    return UpstreamError(500, f"model {model} failed: {message or code.name}")


def map_rest_error(status: int, body: bytes, model: str) -> UpstreamError:
    """TorchServe's REST error ({"code", "type", "message"}) on the explain path -> our error."""
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")[:300]
    if message == "Prediction failed":
        # What TorchServe says when the handler raised, e.g. because it has no explain support.
        return UpstreamError(
            501, f"model {model} cannot explain: its handler has no explain support or failed while explaining "
            "(implement explain_handle / get_insights in the handler; see TorchServe's MODEL_LOG lines)"
        )
    if status == 404:
        return UpstreamError(404, f"TorchServe does not serve model {model}: {message}")
    if status in (400, 413, 503, 504, 507):
        return UpstreamError(status if status != 507 else 503, f"model {model}: {message}")
    return UpstreamError(500, f"model {model} failed to explain: {message or status}")


class TorchServeClient:
    def __init__(
        self, inference_target: str, management_target: str, tokens: TokenSource, inference_url: str = ""
    ) -> None:
        stubs = protos.load()
        self._pb = stubs.inference_pb2
        self._mpb = stubs.management_pb2
        options = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]
        self._inference_channel = grpc.aio.insecure_channel(inference_target, options=options)
        self._management_channel = grpc.aio.insecure_channel(management_target, options=options)
        self._inference = stubs.inference_pb2_grpc.InferenceAPIsServiceStub(self._inference_channel)
        self._management = stubs.management_pb2_grpc.ManagementAPIsServiceStub(self._management_channel)
        self.tokens = tokens
        # Explanations exist only in TorchServe's REST API (its gRPC API has no explain).
        self._inference_url = inference_url.rstrip("/")
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        await self._inference_channel.close()
        await self._management_channel.close()
        if self._http is not None:
            await self._http.aclose()

    async def _call(
        self, kind: KeyKind, method: Any, request: Any, timeout: float, model: str,
        response_timeout_s: float | None = None,
    ) -> Any:
        try:
            metadata: Metadata = await self.tokens.metadata(kind)
        except TokenUnavailable as exc:
            raise UpstreamError(503, f"TorchServe is not ready to serve model {model}: {exc}") from None
        started = time.monotonic()
        try:
            return await method(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            if not (err.code() == grpc.StatusCode.PERMISSION_DENIED and _TOKEN_REJECTED in (err.details() or "")):
                raise map_rpc_error(err, model, time.monotonic() - started, response_timeout_s) from None
        # Rejected at TorchServe's auth interceptor, so the model never saw it: safe to retry once.
        try:
            metadata = await self.tokens.on_rejected(kind, metadata)
            started = time.monotonic()
            return await method(request, metadata=metadata, timeout=timeout)
        except TokenUnavailable as exc:
            raise UpstreamError(503, f"TorchServe rejected our token for model {model}: {exc}") from None
        except grpc.aio.AioRpcError as err:
            raise map_rpc_error(err, model, time.monotonic() - started, response_timeout_s) from None

    async def predict(
        self, model: str, version: str | None, row: Mapping[str, bytes], response_timeout_s: float
    ) -> bytes:
        """One row through TorchServe; our deadline runs a little past TorchServe's own
        responseTimeout so that TorchServe's answer (and its message) arrives first."""
        request = self._pb.PredictionsRequest(model_name=model, model_version=version or "", input=row)
        response = await self._call(
            "inference", self._inference.Predictions, request, response_timeout_s + _DEADLINE_MARGIN_S, model,
            response_timeout_s,
        )
        return bytes(response.prediction)

    async def explain(self, model: str, row: Mapping[str, bytes], response_timeout_s: float) -> bytes:
        """One row through TorchServe's /explanations: the handler's explain path."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=response_timeout_s + _DEADLINE_MARGIN_S)
        try:
            metadata = await self.tokens.metadata("inference")
        except TokenUnavailable as exc:
            raise UpstreamError(503, f"TorchServe is not ready to serve model {model}: {exc}") from None
        # One multipart file per input: the worker gets bytes per key, as over gRPC.
        files = {name: (name, value, "application/octet-stream") for name, value in row.items()}
        try:
            response = await self._http.post(
                f"{self._inference_url}/explanations/{model}", files=files, headers=dict(metadata)
            )
        except httpx.TimeoutException:
            raise UpstreamError(504, f"model {model} did not explain in time") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(503, f"model {model} is unavailable, retry later: {exc}") from None
        if response.status_code != 200:
            raise map_rest_error(response.status_code, response.content, model)
        return response.content

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
