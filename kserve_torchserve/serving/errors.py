"""Every failed request answered in one format, ``{"error": "<one short message>"}``, and logged once.

Exception -> (status, message), for REST (``error_response``, the one exception handler on
kserve's app and the fast path's) and for gRPC (``grpc_fastpath.QuietExceptionToStatus``):

    UpstreamError                 its http_status (Retry-After kept), its message
    InvalidInput                  400   (ours and kserve's checks of a request)
    RequestValidationError        400   pydantic's first complaint, where it was; never the input
    pydantic ValidationError      400   the same, for bodies the fast path validates itself
    starlette HTTPException       its status and detail (FastAPI's "error parsing the body", 404, 405)
    ModelNotFound                 404
    NotImplementedError, UnsupportedProtocol   501
    ModelNotReady, ServerNotReady, ServerNotLive   503
    InferenceError                500
    anything else                 500 "internal error (<type>)", logged with its traceback: a bug

Messages never carry what the client sent beyond a name or a number (kserve's own handlers and
FastAPI's 422 echo whole bodies: a 12.9 MB bad body came back as a 20.6 MB answer), and are cut
to ``MAX_MESSAGE`` characters, so an error answer stays under 4 KB.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import orjson
from fastapi.exceptions import RequestValidationError
from kserve.errors import (
    InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotLive, ServerNotReady, UnsupportedProtocol,
)
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import UpstreamError
from . import logs

MAX_MESSAGE = 1000  # characters: an answer of {"error": ...} stays well under 4 KB
_FASTAPI_UNPARSED = "There was an error parsing the body"
_KNOWN: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidInput, 400),
    (ModelNotFound, 404),
    (NotImplementedError, 501),
    (UnsupportedProtocol, 501),
    (ModelNotReady, 503),
    (ServerNotReady, 503),
    (ServerNotLive, 503),
    (InferenceError, 500),
)


def _where(loc: Sequence[Any]) -> str:
    """pydantic's location as a path into the body: ``inputs[0].shape[1]``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + logs.clean(str(part), 40)
    return path


def validation_message(errors: Sequence[Mapping[str, Any]], body: Any = None) -> str:
    """pydantic's complaints about a v2 body as one line: the first, where it was, and how many more.

    FastAPI tries kserve's v2 body as an InferenceRequest or as raw bytes: the bytes branch
    says nothing useful and is left out. A v1 body (``{"instances": ...}``) is named as such.
    """
    if isinstance(body, (bytes, bytearray)):  # the raw body (the fast path's): parsed only for this message
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = None
    if isinstance(body, dict) and "instances" in body and "inputs" not in body:
        return ('this is a v1 body ({"instances": [...]}): send it to /v1/models/{model}:predict, '
                'or send v2\'s {"inputs": [...]} here')
    kept = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part not in ("body", "InferenceRequest")]
        if error.get("loc", ())[:2] == ("body", "bytes"):
            continue
        kept.append((loc, error))
    if not kept:
        return "invalid v2 request body"
    loc, first = kept[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error") or first.get("msg", "")
        return f"request body is not valid JSON: {logs.clean(str(detail).removeprefix('Invalid JSON: '))}"
    where = _where(loc)
    more = f" (and {len(kept) - 1} more problems)" if len(kept) > 1 else ""
    return f"invalid v2 request: {where or 'body'}: {logs.clean(str(first.get('msg', 'invalid')))}{more}"


# kserve's words for an unknown model carry the name from the URL: kept only when it is a plain
# name (or "name (version v)"), so the answer never repeats arbitrary input.
_NOT_FOUND = re.compile(r"Model with name ([A-Za-z0-9_.() -]{1,160}) does not exist\.")


def _not_found(message: str) -> str:
    return message if _NOT_FOUND.fullmatch(message) else "Model with that name does not exist."


def status_and_message(exc: BaseException) -> tuple[int, str, bool]:
    """(HTTP status, message for the client, whether the failure is a bug) for any exception."""
    if isinstance(exc, UpstreamError):
        return exc.http_status, exc.message, False
    if isinstance(exc, RequestValidationError):
        return 400, validation_message(exc.errors(), exc.body), False
    if isinstance(exc, ValidationError):
        return 400, validation_message(exc.errors(include_url=False, include_input=False)), False
    if isinstance(exc, HTTPException):
        if exc.status_code == 400 and exc.detail == _FASTAPI_UNPARSED:  # FastAPI's words for any parser failure
            return 400, "request body is not valid JSON: not UTF-8, or nested too deep", False
        return exc.status_code, str(exc.detail), False
    if isinstance(exc, ModelNotFound):
        return 404, _not_found(str(exc)), False
    for kind, status in _KNOWN:
        if isinstance(exc, kind):
            return status, str(exc), False
    return 500, f"internal error ({type(exc).__name__}); the server log has the details", True


def error_body(message: str) -> bytes:
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return orjson.dumps({"error": message})


def route_of(scope: Mapping[str, Any]) -> str:
    return f"{scope.get('method', '?')} {scope.get('path', '?')}"


def request_id_of(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("latin-1")
    return None


def error_response(scope: Mapping[str, Any], exc: BaseException) -> Response:
    """The answer for ``exc`` on REST, logged once (logs.py)."""
    status, message, unexpected = status_and_message(exc)
    logs.request_failed(status, route_of(scope), request_id_of(scope.get("headers", ())), message,
                        exc=exc, unexpected=unexpected)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, UpstreamError) and \
        exc.retry_after_s is not None else None
    extra = getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None
    return Response(error_body(message), status_code=status, media_type="application/json",
                    headers={**(extra or {}), **(headers or {})})


async def handle(request: Request, exc: Exception) -> Response:
    """The exception handler for every type on kserve's FastAPI app (LeanRESTServer installs it)."""
    return error_response(request.scope, exc)


HANDLED: tuple[type[Exception], ...] = (
    UpstreamError, RequestValidationError, HTTPException, *(kind for kind, _ in _KNOWN if issubclass(kind, Exception)),
    Exception,
)
