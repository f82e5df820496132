"""The two hot routes, v1 ``:predict`` and v2 ``/infer``, without FastAPI's per-request machinery.

Why: py-spy on our process under load put about a third of its CPU in Starlette's
routing, FastAPI's parameter resolution, Request/Response objects and the middleware
chain, for work that is a few dictionary lookups. Our process shares the cores with
TorchServe's Java and workers, so that CPU is throughput lost.

This ASGI app sits in front of kserve's FastAPI app. For a POST with a plain JSON body
to one of our models' predict routes, it calls the same DataPlane methods, in the same
order, as kserve's endpoints (``model_ready``, ``decode``, ``infer``, ``encode``), and
renders failures with the exception handlers registered on kserve's app, so answers and
errors are kserve's. Everything else goes to kserve's app unchanged, with the body
replayed: other routes, CloudEvents (``ce-*`` headers or their content type), the v2
binary-data extension, other content types, and v2 bodies that kserve's schema rejects
(kserve then answers with its own validation error).

Versioned v2 routes (``/v2/models/{m}/versions/{v}/infer``, which kserve answers with
"not supported") become the plain route with ``x-model-version: {v}``, on either path:
the model picks the version (management/registry.py).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Awaitable, Callable, MutableMapping

import orjson
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
from kserve.constants.constants import PredictorProtocol
from kserve.errors import ModelNotReady
from pydantic import ValidationError
from starlette.requests import Request

from .metrics import kserve_histograms
from .model import VERSION_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)
_trace = logging.getLogger("kserve.trace")  # kserve's own trace logger (kserve/logging.py)

_V1_PREFIX, _V1_SUFFIX = "/v1/models/", ":predict"
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"
_VERSIONS = "/versions/"
_VERSION_HEADER = VERSION_HEADER.encode("latin-1")
_JSON = b"application/json"
_BINARY_EXTENSION = b"inference-header-content-length"
# What ORJSONResponse (kserve's default response class) passes to orjson.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def route(path: str) -> tuple[str, str] | None:
    """("v1" | "v2", model name) for a predict/infer path we may serve, else None."""
    if path.startswith(_V1_PREFIX) and path.endswith(_V1_SUFFIX):
        name = path[len(_V1_PREFIX):-len(_V1_SUFFIX)]
        return ("v1", name) if name and "/" not in name else None
    if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
        name = path[len(_V2_PREFIX):-len(_V2_SUFFIX)]
        return ("v2", name) if name and "/" not in name else None  # versions/{v}/infer: kserve's
    return None


def plain_json(headers: list[tuple[bytes, bytes]], required: bool = False) -> bool:
    """True when nothing in the headers asks for kserve's other decodings.

    ``required``: the body must be declared JSON (FastAPI parses v2 bodies only then);
    kserve's v1 endpoint reads an undeclared body as JSON.
    """
    declared = False
    for name, value in headers:
        if name == b"content-type":
            if value.split(b";", 1)[0].strip().lower() != _JSON:
                return False
            declared = True
        elif name.startswith(b"ce-") or name == _BINARY_EXTENSION:
            return False
    return declared or not required


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away mid-body
            raise ConnectionError("client disconnected")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then whatever the client sends next (disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def send_json(send: Send, status: int, content: Any, headers: dict[str, str]) -> None:
    body = orjson.dumps(content, option=_ORJSON_OPTIONS)
    await send_bytes(send, status, body, {**headers, "content-type": "application/json"})


async def send_bytes(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def unversioned(scope: Scope) -> Scope:
    """``/v2/models/{m}/versions/{v}/infer`` as ``/v2/models/{m}/infer`` with the header that addresses ``v``.

    kserve's own versioned route answers "not supported"; the version is the model's
    business (``x-model-version``), so the request is served like any other.
    """
    path = scope["path"]
    if not (path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX)) or _VERSIONS not in path:
        return scope
    name, _, version = path[len(_V2_PREFIX):-len(_V2_SUFFIX)].partition(_VERSIONS)
    if not name or not version or "/" in name or "/" in version:
        return scope
    plain = f"{_V2_PREFIX}{name}{_V2_SUFFIX}"
    headers = [(k, v) for k, v in scope["headers"] if k != _VERSION_HEADER]
    headers.append((_VERSION_HEADER, version.encode("latin-1")))
    return {**scope, "path": plain, "raw_path": plain.encode("latin-1"), "headers": headers}


class FastPath:
    """ASGI app: our models' predict routes directly on kserve's DataPlane, the rest to ``app``.

    ``fast=False`` (--disable_fast_path) keeps only the rewrite of versioned routes.
    """

    def __init__(self, app: ASGIApp, dataplane: DataPlane, fast: bool = True) -> None:
        self.app = app
        self.dataplane = dataplane
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = unversioned(scope)
        target = route(scope["path"]) if self.fast and scope["type"] == "http" and scope["method"] == "POST" else None
        if target is None or not plain_json(scope["headers"], required=target[0] == "v2"):
            await self.app(scope, receive, send)
            return
        protocol, name = target
        try:
            body = await read_body(receive)
        except ConnectionError:
            return  # nobody left to answer
        request: Any = body
        if protocol == "v2":
            try:
                request = InferenceRequest.model_validate_json(body)
            except ValidationError:
                # kserve's endpoint answers with its own message for this body.
                await self.app(scope, replay(body, receive), send)
                return
        try:
            await self._serve(protocol, name, request, scope, send)
        except Exception as exc:
            await self._error(exc, scope, replay(body, receive), send)

    async def _serve(self, protocol: str, name: str, request: Any, scope: Scope, send: Send) -> None:
        # Step for step what kserve's v1 predict / v2 infer endpoints do.
        if not await self.dataplane.model_ready(name, True):
            raise ModelNotReady(name)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        model = self.dataplane.model_registry.get_model(name)
        if protocol == "v1" and hasattr(model, "predict_v1_bytes"):
            # Ours: the body goes to TorchServe unparsed and the answer comes back ready to send.
            response_headers: dict[str, str] = {}
            answer = await self._timed(model, model.predict_v1_bytes(request, headers, response_headers), headers)
            return await send_bytes(send, 200, answer, {**response_headers, "content-type": "application/json"})
        if protocol == "v1":
            decoded, attributes = self.dataplane.decode(body=request, headers=headers)
        else:
            decoded, attributes = self.dataplane.decode(
                request, headers, protocol_version=PredictorProtocol.REST_V2.value, model_name=name
            )
            attributes = {}
        if getattr(model, "direct_predict", False):
            response_headers = {}
            response = await self._timed(model, model.predict(decoded, headers, response_headers), headers)
        else:
            response, response_headers = await self.dataplane.infer(model_name=name, request=decoded, headers=headers)
        response, extra = self.dataplane.encode(
            model_name=name, response=response, headers=headers, req_attributes=attributes
        )
        response_headers.update(extra)
        response_headers.pop("content-length", None)
        if protocol == "v2":
            response_headers.pop("content-type", None)
        if isinstance(response, (bytes, str)):
            body = response.encode("utf-8") if isinstance(response, str) else response
            return await send_bytes(send, 200, body, response_headers)
        if protocol == "v2":
            # kserve returns InferenceResponse.model_validate(response), which FastAPI
            # serializes with jsonable_encoder: the same as this dump.
            response = InferenceResponse.model_validate(response).model_dump(mode="json", by_alias=True)
        await send_json(send, 200, response, response_headers)

    @staticmethod
    async def _timed(model: Any, answering: Any, headers: dict[str, str] | None = None) -> Any:
        """What DataPlane.infer -> Model.__call__ add to a model whose predict() is the whole answer
        (identity pre/postprocess, no validation): kserve's histograms and, at DEBUG, its per-request
        line; without three histograms, three inspect checks and six clock reads (py-spy: 6% of our CPU)."""
        preprocess, predict, postprocess = kserve_histograms(model.name)
        preprocess.observe(0.0)  # nothing to preprocess: kserve would time an identity call
        started = time.perf_counter()
        try:
            return await answering
        finally:
            took = time.perf_counter() - started
            predict.observe(took)
            postprocess.observe(0.0)
            if getattr(model, "enable_latency_logging", False):  # kserve's per-request line: TS_LOG_LEVEL=DEBUG
                _trace.info("requestId: %s, preprocess_ms: 0, explain_ms: 0, predict_ms: %.3f, postprocess_ms: 0",
                            (headers or {}).get("x-request-id", "N.A."), 1000 * took)

    async def _error(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """kserve's answer for ``exc``: the handler its app has for the nearest exception class."""
        handlers = getattr(self.app, "exception_handlers", {})
        handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)
