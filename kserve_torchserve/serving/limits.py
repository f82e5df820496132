"""What a request may cost us before it is served: its size and its content type (its time on the
wire: deadlines.py).

- Size: a body over TorchServe's ``max_request_size`` (``TS_MAX_REQUEST_SIZE``) is answered 413
  before it is read: at once from its Content-Length, or as soon as a chunked body passes the
  limit (``read_body``); it is never buffered whole. What the client still sends is discarded
  for up to ``BODY_TIMEOUT_S`` (uvicorn reads on), so that a client that reads only after
  sending everything gets the 413 instead of a connection reset.
- Content type: the inference routes read JSON (v1 also kserve's other accepted types, and
  CloudEvents; v2 also its binary-data extension); a body declared as anything else (e.g.
  ``text/plain``) is 415, HTTP's status for "this resource does not take that media type",
  instead of being parsed as JSON regardless (``content_type_refusal``).
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, MutableMapping, Sequence

from ..config.settings import DEFAULT_MAX_REQUEST_SIZE

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Scope = MutableMapping[str, Any]

_JSON = b"application/json"
# kserve's v1 endpoint parses these as JSON too (dataplane.JSON_HEADERS), and curl -d without
# -H sends form encoding (KServe's own docs call :predict so).
_V1_ALSO = (b"application/octet-stream", b"application/x-www-form-urlencoded")
_BINARY_EXTENSION = b"inference-header-content-length"


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int, declared: bool) -> None:
        what = f"request body of {size} bytes is" if declared else "request body is"
        super().__init__(f"{what} over the {limit}-byte limit: send smaller requests or raise TS_MAX_REQUEST_SIZE")


def max_body_bytes() -> int:
    """The limit when the server did not say: TS_MAX_REQUEST_SIZE (checked at start-up), else TorchServe's default."""
    value = os.environ.get("TS_MAX_REQUEST_SIZE", "").strip()
    return int(value) if value.isdigit() else DEFAULT_MAX_REQUEST_SIZE


def declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes ``limit``; ConnectionError if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away mid-body
            raise ConnectionError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit, declared=False)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def expects_continue(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """The client waits for "100 Continue" before its body: refused without it, it sends none, so the
    connection must close (uvicorn would read its next request as that body)."""
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)


def content_type_refusal(protocol: str, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """None when an inference route (``protocol`` "v1" or "v2") reads the body as declared; else why not (415)."""
    declared = None
    for name, value in headers:
        if name.startswith(b"ce-") or (protocol == "v2" and name == _BINARY_EXTENSION):
            return None  # CloudEvents binary mode, v2 binary data: kserve decodes them
        if name == b"content-type":
            declared = value.split(b";", 1)[0].strip().lower()
    if declared is None or declared == _JSON or declared.endswith(b"+json"):
        return None
    if protocol == "v1" and declared in _V1_ALSO:
        return None
    return ("unsupported Content-Type: send the body as application/json"
            + (" (or v2's binary data extension)" if protocol == "v2" else ""))


def inference_protocol(path: str) -> str | None:
    """"v1" (``:predict``, ``:explain``) or "v2" (``/infer``) for a model's inference route, else None."""
    if path.startswith("/v1/models/") and (path.endswith(":predict") or path.endswith(":explain")):
        return "v1"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "v2"
    return None


def declared_json(scope: Scope, protocol: str) -> Scope:
    """A v2 body sent without a Content-Type is read as JSON, as v1's is (kserve answered
    "inference-header-content-length is missing" instead)."""
    headers = scope["headers"]
    if protocol != "v2" or any(name in (b"content-type", _BINARY_EXTENSION) for name, _ in headers):
        return scope
    return {**scope, "headers": [*headers, (b"content-type", _JSON)]}
