"""The hot routes answered by the HTTP protocol itself, below uvicorn's ASGI request cycle.

Why: on the 2-core VM our process's CPU per request is throughput taken from TorchServe.
Measured in-process (``benchmarks/protocol_cost.py``: the same v1 request, a fixed answer from
TorchServe, no sockets), uvicorn's httptools protocol with its request/response cycle, an ASGI
task and the ASGI layers (uvicorn's proxy headers, CountRequests, FastPath) costs several times
what the same HTTP/1.1 exchange costs in a bare httptools protocol; under load
(``rest_floor.py``) that gap was most of what separated ours from a bare forward.

A request whose head ``FastPath.hot_route`` accepts (a POST to a model's predict route with a
Content-Length within the limit and a plain JSON body: nothing to refuse, rewrite or stream),
while nothing uvicorn adds per request is on (access log, concurrency limit) and no other
request on the connection is being answered, never becomes an ASGI request: its body is
gathered as the parser hands it over, ``FastPath.respond`` answers it (the same code as the
ASGI fast path: same answers, errors, logs and histograms), it is counted as CountRequests
counts, and the answer is written as one status line, uvicorn's default headers, the answer's
headers and the body.

Everything else stays uvicorn's: parsing, keep-alive and its timer, pipelined requests (one
that arrives while a hot one is answered waits in uvicorn's queue, and is started when the hot
answer completes), write-side flow control, graceful shutdown (the answer's task is in the server's task
set, and a connection told to shut down gets ``connection: close``), and every other request.
deadlines.py's timers see a hot request like any other (``HotCycle`` has what they read). The
one difference: an answer header uvicorn would refuse (a control character in a value) is a 500
here, counted as one; uvicorn, having started the answer, closes the connection without one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE

from .metrics import COUNTERS, RequestCounters
from .rest_fastpath import FastPath

# Answer headers the hot route writes itself, from the answer as it is sent (uvicorn's send() reads them).
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
# Answer headers already checked, as their lines: most answers repeat the same few (content-type), and
# checking one costs 0.6 us. Bounded: headers that vary per answer are checked each time once it is full.
_LINES: dict[tuple[str, str], bytes] = {}
_LINES_MAX = 256
_INTERNAL_ERROR = (b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
                   b"Internal Server Error")  # what uvicorn answers when an app fails before answering


class _NobodyWaits:
    """uvicorn's protocol sets its cycle's ``message_event`` when the connection is lost; a hot request
    has nothing waiting on it (its task starts once the body is whole)."""

    def set(self) -> None:
        return None


class HotCycle:
    """A request the protocol answers itself: what uvicorn's protocol and deadlines.py read of a cycle."""

    __slots__ = ("scope", "protocol", "name", "body", "more_body", "keep_alive", "disconnected",
                 "response_started", "response_complete")
    message_event = _NobodyWaits()

    def __init__(self, scope: dict[str, Any], target: tuple[str, str], keep_alive: bool) -> None:
        self.scope = scope
        self.protocol, self.name = target
        self.body = bytearray()
        self.more_body = True
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_started = False
        self.response_complete = False


def hot_protocol(base: type[asyncio.Protocol], fastpath: FastPath,
                 counters: RequestCounters = COUNTERS) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's httptools protocol, with deadlines.py's changes) answering hot requests itself."""

    defaults_of: Any = None
    defaults = b""

    class HotProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # What uvicorn adds per request (a log line, a context, a limit) keeps this connection's
            # requests on its way; all of it is fixed for the connection's life (access_log: at creation).
            self.hot = not (self.access_log or self.limit_concurrency is not None or self.root_path
                            or self.config.reset_contextvars or self.logger.isEnabledFor(TRACE_LOG_LEVEL))

        def on_headers_complete(self) -> None:
            cycle = self._hot_cycle()
            if cycle is None:
                super().on_headers_complete()
            else:
                self.cycle = cycle

        def _hot_cycle(self) -> HotCycle | None:
            previous = self.cycle
            if not self.hot or (previous is not None and not previous.response_complete) \
                    or self.parser.should_upgrade():
                return None
            http_version = self.parser.get_http_version()
            if http_version not in ("1.1", "1.0"):
                return None
            url = self.url
            if url[:1] != b"/" or b"%" in url or b"#" in url or not url.isascii():
                return None  # another form of URL, or uvicorn's unquoting: names like that are rare
            raw_path, _, query = url.partition(b"?")  # what httptools.parse_url gives for the rest
            method, path = self.parser.get_method().decode("ascii"), raw_path.decode("ascii")
            hot = fastpath.hot_route(method, path, query, self.headers)
            if hot is None:
                return None
            target, headers = hot
            # The scope uvicorn would make (on_message_begin began it): logs and errors read it.
            scope = self.scope
            scope.update(method=method, path=path, raw_path=raw_path, query_string=query, headers=headers)
            if http_version != "1.1":
                scope["http_version"] = http_version
            return HotCycle(scope, target, keep_alive=http_version != "1.0" and self.parser.should_keep_alive())

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if type(cycle) is HotCycle:
                cycle.body += body  # Content-Length is within the limit (hot_route): no need to pause reading
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            cycle = self.cycle
            if type(cycle) is not HotCycle:
                super().on_message_complete()
                return
            cycle.more_body = False
            task = self.loop.create_task(self._answer(cycle))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)  # uvicorn's shutdown waits for the server's tasks

        async def _answer(self, cycle: HotCycle) -> None:
            try:
                request, cycle.body = bytes(cycle.body), bytearray()  # not held while the connection idles
                status, body, headers = await fastpath.respond(cycle.protocol, cycle.name, request, cycle.scope)
                if self.flow.write_paused and not cycle.disconnected:
                    await self.flow.drain()
                head = self._head(status, headers, len(body), cycle)
                counters.record(status)  # as CountRequests: answered, whether or not the client is still there
                if cycle.disconnected:
                    return
                cycle.response_started = True
                self.transport.write_now(head, body)
            except BaseException as exc:  # respond() answers every error: this is a bug, answered as uvicorn does
                counters.record(500)
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                if not cycle.response_started and not cycle.disconnected:
                    cycle.response_started = True
                    self.transport.write(STATUS_LINE[500] + self._defaults() + _INTERNAL_ERROR)
                self.transport.close()
                cycle.response_complete = True
                self.on_response_complete()  # counted in uvicorn's total_requests, as its 500 is
                return
            cycle.response_complete = True
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()

        def _defaults(self) -> bytes:
            """uvicorn's default headers (date, server), as lines: joined again only when uvicorn renews them
            (once a second, with the date)."""
            nonlocal defaults_of, defaults
            current = self.server_state.default_headers
            if current is not defaults_of:
                defaults_of, defaults = current, b"".join(name + b": " + value + b"\r\n" for name, value in current)
            return defaults

        def _head(self, status: int, headers: dict[str, str], length: int, cycle: HotCycle) -> bytes:
            lines = [STATUS_LINE[status], self._defaults()]
            for key, text in headers.items():
                line = _LINES.get((key, text))
                if line is None:
                    lowered = key.lower()
                    if lowered in _FRAMING:  # the length is the body's; "connection: close" ends the connection
                        if lowered == "connection" and "close" in (t.strip() for t in text.lower().split(",")):
                            cycle.keep_alive = False
                        continue
                    name, value = lowered.encode("latin-1"), text.encode("latin-1")
                    if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):  # uvicorn's checks
                        raise RuntimeError("Invalid HTTP header")
                    line = name + b": " + value + b"\r\n"
                    if len(_LINES) < _LINES_MAX:
                        _LINES[key, text] = line
                lines.append(line)
            lines.append(b"content-length: %d\r\n" % length)
            if not cycle.keep_alive:  # HTTP/1.0, "connection: close", or told to shut down
                lines.append(b"connection: close\r\n")
            lines.append(b"\r\n")
            return b"".join(lines)

    return HotProtocol


def install(config: Any, fastpath: FastPath, counters: RequestCounters = COUNTERS) -> None:
    """uvicorn's ``config.http`` (a protocol class) with the hot routes, when the fast path is on."""
    if not fastpath.fast:
        return
    base = config.http
    if not (isinstance(base, type) and issubclass(base, asyncio.Protocol) and getattr(base, "timed", False)):
        raise TypeError("the hot route needs deadlines.timed_protocol()'s protocol as config.http")
    config.http = hot_protocol(base, fastpath, counters)
