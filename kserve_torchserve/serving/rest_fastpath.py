"""The two hot routes, v1 ``:predict`` and v2 ``/infer``, without FastAPI's per-request machinery.

Why: py-spy on our process under load put about a third of its CPU in Starlette's
routing, FastAPI's parameter resolution, Request/Response objects and the middleware
chain, for work that is a few dictionary lookups. Our process shares the cores with
TorchServe's Java and workers, so that CPU is throughput lost.

This ASGI app sits in front of kserve's FastAPI app. For a POST with a plain JSON body
to one of our models' predict routes, it calls the same DataPlane methods, in the same
order, as kserve's endpoints (``model_ready``, ``decode``, ``infer``, ``encode``), and
renders failures with the same handler as kserve's app (errors.py), so answers and errors
are the same on both paths. Everything else goes to kserve's app, with the body replayed:
other routes, CloudEvents (``ce-*`` headers or their content type), the v2 binary-data
extension, v1 bodies in kserve's other accepted content types. A v2 body that kserve's
schema rejects is answered here, 400 with pydantic's first complaint (kserve's 422 echoed
the whole body).

Before any of that, every HTTP request passes the checks of limits.py (size, content type)
and its body is read here, bounded, whichever path serves it.

Versioned v2 routes (``/v2/models/{m}/versions/{v}/infer``, which kserve answers with
"not supported") become the plain route with ``x-model-version: {v}``, on either path:
the model picks the version (management/registry.py).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, quote, urlencode
from typing import Any, Awaitable, Callable, MutableMapping

import orjson
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
from kserve.constants.constants import PredictorProtocol
from kserve.errors import ModelNotReady
from pydantic import ValidationError

from . import errors, limits, logs
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
_EMPTY = {"v1": 'request body is empty: send a JSON object like {"instances": [...]}',
          "v2": 'request body is empty: send a JSON object like {"inputs": [...]}'}


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
    """A version named in the path or the query, as the header that addresses it.

    ``/v2/models/{m}/versions/{v}/infer`` becomes ``/v2/models/{m}/infer``, and a
    ``model_version`` query parameter on any ``/v2/models/...`` route (which kserve's endpoints
    answer with 501 "not supported") is dropped: both become ``x-model-version``, so the request
    is served like any other, and a version nobody serves is the registry's 404.
    """
    path = scope["path"]
    if not path.startswith(_V2_PREFIX):
        return scope
    version: str | None = None
    query = scope.get("query_string", b"")
    if b"model_version=" in query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        version = next((v for k, v in pairs if k == "model_version"), None)
        rest = [(k, v) for k, v in pairs if k != "model_version"]
        scope = {**scope, "query_string": urlencode(rest).encode("latin-1")}
    if path.endswith(_V2_SUFFIX) and _VERSIONS in path:
        name, _, in_path = path[len(_V2_PREFIX):-len(_V2_SUFFIX)].partition(_VERSIONS)
        if name and in_path and "/" not in name and "/" not in in_path:
            plain = f"{_V2_PREFIX}{name}{_V2_SUFFIX}"
            # raw_path is bytes on the wire: quoted, so any character of a name survives.
            scope = {**scope, "path": plain, "raw_path": quote(plain).encode("ascii")}
            version = in_path
    if version is None:
        return scope
    headers = [(k, v) for k, v in scope["headers"] if k != _VERSION_HEADER]
    # A header is bytes; UTF-8 keeps a version outside latin-1 intact enough to be "not served" (404).
    headers.append((_VERSION_HEADER, version.encode("utf-8")))
    return {**scope, "headers": headers}


class FastPath:
    """ASGI app: our models' predict routes directly on kserve's DataPlane, the rest to ``app``.

    Every HTTP request passes its checks first, fast path or not (limits.py): a body over
    ``max_body_bytes`` is 413 before it is read whole, a body an inference route cannot read is
    415, an empty one 400. ``fast=False`` (--disable_fast_path) keeps those and the rewrite of
    versioned routes, and leaves the rest to kserve.
    """

    def __init__(self, app: ASGIApp, dataplane: DataPlane, fast: bool = True, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.dataplane = dataplane
        self.fast = fast
        self.max_body_bytes = limits.max_body_bytes() if max_body_bytes is None else max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = unversioned(scope)
        protocol = limits.inference_protocol(scope["path"]) if scope["method"] == "POST" else None
        if protocol is not None:
            scope = limits.declared_json(scope, protocol)
        refusal = self._refusal(scope, protocol)
        if refusal is not None:  # answered before the body is read (deadlines.py drops what still comes)
            await self._refuse(scope, send, *refusal, close=limits.expects_continue(scope["headers"]))
            return
        try:
            body = await limits.read_body(receive, self.max_body_bytes)
        except limits.BodyTooLarge as exc:
            await self._refuse(scope, send, 413, str(exc))
            return
        except ConnectionError:
            return  # nobody left to answer
        if protocol is not None and not body:
            await self._refuse(scope, send, 400, _EMPTY[protocol])
            return
        target = route(scope["path"]) if self.fast and protocol is not None else None
        if target is None or not plain_json(scope["headers"], required=target[0] == "v2"):
            await self._forward(scope, replay(body, receive), send)
            return
        protocol, name = target
        request: Any = body
        if protocol == "v2":
            try:
                request = InferenceRequest.model_validate_json(body)
            except ValidationError as exc:
                message = errors.validation_message(exc.errors(include_url=False, include_input=False), body)
                await self._refuse(scope, send, 400, message)
                return
        try:
            await self._serve(protocol, name, request, scope, send)
        except Exception as exc:
            await self._error(exc, scope, send)

    def _refusal(self, scope: Scope, protocol: str | None) -> tuple[int, str] | None:
        declared = limits.declared_length(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            return 413, str(limits.BodyTooLarge(declared, self.max_body_bytes, declared=True))
        if protocol is not None:
            why = limits.content_type_refusal(protocol, scope["headers"])
            if why is not None:
                return 415, why
        return None

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, message: str, close: bool = False) -> None:
        logs.request_failed(status, errors.route_of(scope), errors.request_id_of(scope["headers"]), message)
        headers = {"content-type": "application/json", **({"connection": "close"} if close else {})}
        await send_bytes(send, status, errors.error_body(message), headers)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """kserve's app; an exception it already answered (Starlette re-raises after the handler) ends here,
        so that uvicorn does not log its traceback a second time."""
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not started:
                raise

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

    @staticmethod
    async def _error(exc: Exception, scope: Scope, send: Send) -> None:
        """The answer kserve's app gives for ``exc`` (the same handler: errors.py), logged once."""
        response = errors.error_response(scope, exc)
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
