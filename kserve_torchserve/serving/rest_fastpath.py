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
extension, v1 bodies in kserve's other accepted content types. The common v2 body is read
and its answer written without kserve's pydantic models (v2_json.py); any other v2 body is
validated by them, and one that kserve's schema rejects is answered here, 400 with
pydantic's first complaint (kserve's 422 echoed the whole body).

Before any of that, every HTTP request passes the checks of limits.py (size, content type)
and its body is read here, bounded, whichever path serves it.

Versioned v2 routes (``/v2/models/{m}/versions/{v}/infer``, which kserve answers with
"not supported") become the plain route with ``x-model-version: {v}``, on either path:
the model picks the version (management/registry.py).

``respond`` is the fast path's answer, whichever way it is sent: here, through ASGI, or by the
HTTP protocol itself for a request ``hot_route`` accepts from its head (hot_route.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceResponse
from kserve.constants.constants import PredictorProtocol
from kserve.errors import ModelNotReady
from kserve.protocol.infer_type import InferRequest, InferResponse
from pydantic import ValidationError

from . import errors, limits, logs, v2_json
from .asgi import (ASGIApp, Message, Receive, Scope, Send, hot_head, json_body, plain_json, replay, route, send_bytes,
                   unversioned)
from .metrics import kserve_histograms

logger = logging.getLogger(__name__)
_trace = logging.getLogger("kserve.trace")  # kserve's own trace logger (kserve/logging.py)
# (status, body, headers): an answer, whichever way it is sent (ASGI here, or hot_route.py).
Answer = tuple[int, bytes, dict[str, str]]
_EMPTY = {"v1": 'request body is empty: send a JSON object like {"instances": [...]}',
          "v2": 'request body is empty: send a JSON object like {"inputs": [...]}'}


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
        status, answer, headers = await self.respond(target[0], target[1], body, scope)
        await send_bytes(send, status, answer, headers)

    def hot_route(self, method: str, path: str, query: bytes,
                  headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], list[tuple[bytes, bytes]]] | None:
        """(("v1" | "v2", model), the headers ``respond`` reads) when ``__call__`` would serve this request
        head on the fast path with nothing to refuse, rewrite or stream: the HTTP protocol may then
        answer it with ``respond`` itself (hot_route.py). Else None: the request takes the ASGI way."""
        if not self.fast or method != "POST":
            return None
        target = route(path)
        if target is None or b"model_version=" in query:
            return None  # a version in the query: unversioned() rewrites it (one in the path is not a route())
        head = hot_head(headers)
        # None: no length, chunked, empty or awaited; another content type (415, or kserve's decoding),
        # CloudEvents, v2's binary extension: refused, streamed or decoded the ASGI way.
        if head is None or head[0] > self.max_body_bytes:
            return None
        if target[0] == "v2" and not head[1]:
            headers = limits.declared_json({"headers": headers}, "v2")["headers"]  # as __call__ reads it
        return target, headers

    async def respond(self, protocol: str, name: str, body: bytes, scope: Scope) -> Answer:
        """The answer to a plain JSON ``body`` for model ``name``'s predict route: (status, body, headers);
        every failure as the error answer kserve's app gives, logged once."""
        try:
            request: Any = body
            if protocol == "v2":
                document = v2_json.loads(body)  # once, for both
                request = v2_json.common_request(document, name)  # without pydantic (v2_json.py)
                if request is None:
                    try:
                        request = v2_json.validated(body, document)
                    except ValidationError as exc:
                        message = errors.validation_message(exc.errors(include_url=False, include_input=False), body)
                        return self._refusal_answer(scope, 400, message)
            return await self._serve(protocol, name, request, scope)
        except Exception as exc:
            return self._error(exc, scope)

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
        status, body, headers = FastPath._refusal_answer(scope, status, message)
        await send_bytes(send, status, body, {**headers, **({"connection": "close"} if close else {})})

    @staticmethod
    def _refusal_answer(scope: Scope, status: int, message: str) -> Answer:
        """A client's mistake found here: ``{"error": message}`` with ``status``, logged once."""
        logs.request_failed(status, errors.route_of(scope), errors.request_id_of(scope["headers"]), message)
        return status, errors.error_body(message), {"content-type": "application/json"}

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

    async def _serve(self, protocol: str, name: str, request: Any, scope: Scope) -> Answer:
        # Step for step what kserve's v1 predict / v2 infer endpoints do.
        if not await self.dataplane.model_ready(name, True):
            raise ModelNotReady(name)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        model = self.dataplane.model_registry.get_model(name)
        if protocol == "v1" and hasattr(model, "predict_v1_bytes"):
            # Ours: the body goes to TorchServe unparsed and the answer comes back ready to send.
            response_headers: dict[str, str] = {}
            answer = await self._timed(model, model.predict_v1_bytes(request, headers, response_headers), headers)
            return 200, answer, {**response_headers, "content-type": "application/json"}
        if protocol == "v1":
            decoded, attributes = self.dataplane.decode(body=request, headers=headers)
        else:  # decode returns an InferRequest (v2_json's) as it is
            decoded, attributes = self.dataplane.decode(
                request, headers, protocol_version=PredictorProtocol.REST_V2.value, model_name=name
            )
            attributes = {}
        if getattr(model, "direct_predict", False):
            response_headers = {}
            response = await self._timed(model, model.predict(decoded, headers, response_headers), headers)
        else:
            response, response_headers = await self.dataplane.infer(model_name=name, request=decoded, headers=headers)
        # A request v2_json made (kserve's own are InferenceRequests) may have its answer written by it too.
        plain = isinstance(request, InferRequest) and isinstance(response, InferResponse)
        rendered = v2_json.render(response) if plain else None
        if rendered is not None:  # DataPlane.encode's work for a plain answer to a plain request
            response_headers.pop("content-length", None)
            response_headers.pop("content-type", None)
            return 200, rendered, {**response_headers, "content-type": "application/json"}
        response, extra = self.dataplane.encode(
            model_name=name, response=response, headers=headers, req_attributes=attributes
        )
        response_headers.update(extra)
        response_headers.pop("content-length", None)
        if protocol == "v2":
            response_headers.pop("content-type", None)
        if isinstance(response, (bytes, str)):
            body = response.encode("utf-8") if isinstance(response, str) else response
            return 200, body, response_headers
        if protocol == "v2":
            # kserve returns InferenceResponse.model_validate(response), which FastAPI
            # serializes with jsonable_encoder: the same as this dump.
            response = InferenceResponse.model_validate(response).model_dump(mode="json", by_alias=True)
        return 200, json_body(response), {**response_headers, "content-type": "application/json"}

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
    def _error(exc: Exception, scope: Scope) -> Answer:
        """The answer kserve's app gives for ``exc`` (the same handler: errors.py), logged once."""
        response = errors.error_response(scope, exc)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.raw_headers if k != b"content-length"}
        return response.status_code, bytes(response.body), headers
