"""The ASGI pieces the fast path is made of: which route a path is, whether a body is plain JSON,
replaying a body already read, sending an answer, and the rewrite of a version named in a
path or query into the ``x-model-version`` header (see rest_fastpath.py for why).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from .model import VERSION_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_V1_PREFIX, _V1_SUFFIX = "/v1/models/", ":predict"
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"
_VERSIONS = "/versions/"
_VERSION_HEADER = VERSION_HEADER.encode("latin-1")
_JSON = b"application/json"
_BINARY_EXTENSION = b"inference-header-content-length"
# Headers of a body streamed or awaited (100-continue), or a protocol switch: never the hot route.
_NOT_WHOLE = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
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


def _other_decoding(name: bytes, value: bytes) -> bool:
    """A header that asks for one of kserve's other decodings: a content type other than JSON,
    CloudEvents (``ce-*``), v2's binary extension. One rule for ``plain_json`` and ``hot_head``."""
    if name == b"content-type":
        return value.split(b";", 1)[0].strip().lower() != _JSON
    return name.startswith(b"ce-") or name == _BINARY_EXTENSION


def plain_json(headers: list[tuple[bytes, bytes]], required: bool = False) -> bool:
    """True when nothing in the headers asks for kserve's other decodings.

    ``required``: the body must be declared JSON (FastAPI parses v2 bodies only then);
    kserve's v1 endpoint reads an undeclared body as JSON.
    """
    declared = False
    for name, value in headers:
        if _other_decoding(name, value):
            return False
        declared = declared or name == b"content-type"
    return declared or not required


def hot_head(headers: list[tuple[bytes, bytes]]) -> tuple[int, bool] | None:
    """(Content-Length, whether a content type is declared) when a body is sent whole with a declared
    length (no Transfer-Encoding, Expect or Upgrade) and ``plain_json`` would take it (if declared),
    else None: what limits.declared_length, ``plain_json`` and the streaming checks read, in one pass
    (the hot route reads every request head; three passes cost it a microsecond more)."""
    length: int | None = None
    declared = False
    for name, value in headers:
        if name == b"content-length":
            if length is None:  # the first, as limits.declared_length reads it
                length = int(value) if value.strip().isdigit() else 0
        elif name in _NOT_WHOLE or _other_decoding(name, value):
            return None
        elif name == b"content-type":
            declared = True
    return (length, declared) if length else None


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


def json_body(content: Any) -> bytes:
    """``content`` as kserve's ORJSONResponse writes it."""
    return orjson.dumps(content, option=_ORJSON_OPTIONS)


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
