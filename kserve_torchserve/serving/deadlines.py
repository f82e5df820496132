"""Slow clients (slowloris) cut off, and refused bodies discarded rather than reset.

uvicorn times out only idle kept-alive connections: its keep-alive timer is armed after a
response and cancelled by any byte (``HttpToolsProtocol.data_received``), and nothing times a
request's head or body. A client dribbling its headers or body one byte a second holds a
connection and a task forever. ``RequestDeadlines`` gives every request head
``HEADER_TIMEOUT_S`` from its first byte (from the connection's start for the first request)
and every body ``BODY_TIMEOUT_S`` plus one second per ``BODY_MIN_RATE`` bytes received, the
scheme of Apache's mod_reqtimeout; a client past it gets 408 and is disconnected. The timers
run on the event loop: other clients are served meanwhile. A connection has one
``backend.timers.Deadline``, not a timer per request (benchmarks/protocol_cost.py's hot system:
64.0 -> 62.6 us per request).

A request answered before its body was read (413: too large) would lose its answer to a
connection reset when the client sends its whole body before reading (urllib, requests):
closing a socket with unread data resets it. So the rest of that body is read and dropped
until it ends or its ``BODY_TIMEOUT_S`` is up (``LingeringTransport``; nginx's lingering close).

The same deadline also times an idle kept-alive connection (``timeout_keep_alive``). uvicorn arms
and cancels a timer of its own for that on every request (``protocol_cost.py``: 1.4 us of our
25.8 us per request); the connection's one timer, moved lazily, costs nothing per request.

``timed_protocol()`` is the uvicorn HTTP protocol with all three, for ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, cast

from ..backend.timers import Deadline
from . import logs
from .errors import error_body, request_id_of

# A request head is a few hundred bytes, sent by every real client in one packet: 10 s covers
# a slow mobile link with retransmits (nginx and Apache allow 20-60 s for people typing by hand).
HEADER_TIMEOUT_S = 10.0
# A body gets the same 10 s to start, then must keep up 64 KiB/s on average: 512 kbit/s, below
# any link an inference client uses, and a 6.5 MB body (TorchServe's default limit) gets 110 s.
BODY_TIMEOUT_S = 10.0
BODY_MIN_RATE = 64 * 1024  # bytes per second


class RequestDeadlines:
    """One connection's deadlines: each request head within HEADER_TIMEOUT_S, each body at BODY_MIN_RATE,
    and no more than ``keep_alive_s`` idle between requests.

    The protocol calls ``before(n)`` and ``after(n)`` around each ``data_received``, ``idle()`` when an
    answer is complete and no request is waiting, and ``stop()`` when the connection is lost;
    ``current()`` is the protocol's request/response cycle, which uvicorn creates when a request's
    head is complete.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport,
                 current: Callable[[], Any], keep_alive_s: float | None = None) -> None:
        self._transport = transport
        self._current = current
        self._keep_alive_s = keep_alive_s  # None: idling is someone else's (uvicorn's own timer)
        self._cycle: Any = None  # the request whose head we saw complete
        # What the timer waits for: "head", "body", "idle" (answered, kept alive) or nothing.
        self._waiting: str | None = "head"
        self._head_bytes = 0
        self._body_since = 0.0
        self._body_bytes = 0
        self._deadline = Deadline(loop, self._late)
        self._deadline.set(HEADER_TIMEOUT_S)  # a connection that never sends is closed too

    def before(self, size: int) -> None:
        if self._waiting is None or self._waiting == "idle":
            cycle = self._current()
            if cycle is None or cycle.response_complete:  # the first bytes of the next request (kept alive)
                self._waiting, self._head_bytes = "head", 0
                self._deadline.set(HEADER_TIMEOUT_S)
        if self._waiting == "head":
            self._head_bytes += size

    def after(self, size: int) -> None:
        cycle = self._current()
        if cycle is not None and cycle is not self._cycle:  # a new request's head is complete
            self._cycle, self._waiting = cycle, None
            if cycle.more_body:
                self._waiting, self._body_since, self._body_bytes = "body", time.monotonic(), 0
                self._deadline.set(BODY_TIMEOUT_S)
        elif self._waiting == "body" and cycle is self._cycle:
            self._body_bytes += size
            if not cycle.more_body:
                self._waiting = None

    def idle(self) -> None:
        """An answer is complete and no request is waiting: the connection may idle ``keep_alive_s``.
        A body still coming (answered before it was read) keeps its deadline: the rest is dropped until it
        is up, and the connection closed (``linger_s``)."""
        if self._waiting is None and self._keep_alive_s is not None:
            self._waiting = "idle"
            self._deadline.set(self._keep_alive_s)

    def stop(self) -> None:
        self._waiting = None
        self._deadline.cancel()

    def _late(self) -> None:
        if self._waiting == "head":
            self._head_late()
        elif self._waiting == "body":
            self._body_late()
        elif self._waiting == "idle":  # kept alive past keep_alive_s: closed quietly, as uvicorn's timer does
            self._waiting = None
            self._transport.close()
        # else an answer is being made: nothing to time

    def _head_late(self) -> None:
        self._waiting = None
        if self._head_bytes == 0:  # nothing sent at all: close quietly, as an idle keep-alive
            self._transport.close()
            return
        self._cut(None, f"request head not received within {HEADER_TIMEOUT_S:.0f} s")

    def linger_s(self) -> float:
        """Seconds the rest of an answered request's body may still be read and dropped (0: close now)."""
        cycle = self._current()
        if cycle is None or cycle is not self._cycle or not cycle.more_body or not cycle.response_complete:
            return 0.0
        return max(0.0, self._body_since + BODY_TIMEOUT_S - time.monotonic())

    def _body_late(self) -> None:
        cycle = self._cycle
        if cycle is None or not cycle.more_body or cycle is not self._current():
            self._waiting = None
            return
        if cycle.response_complete:  # answered before its body was read (413): the rest is dropped, for a while
            lingered = self.linger_s()
            if lingered > 0:
                self._deadline.set(lingered)
            else:
                self._waiting = None
                self._transport.close()
            return
        allowed = self._body_since + BODY_TIMEOUT_S + self._body_bytes / BODY_MIN_RATE
        remaining = allowed - time.monotonic()
        if remaining > 0:  # it kept up the minimum rate so far
            self._deadline.set(remaining)
            return
        self._waiting = None
        self._cut(cycle, f"request body not received in time (at least {BODY_MIN_RATE // 1024} KiB/s after "
                         f"{BODY_TIMEOUT_S:.0f} s)")

    def _cut(self, cycle: Any, reason: str) -> None:
        """408 (unless an answer has begun) and disconnect: the app's receive() then sees a disconnect."""
        if self._transport.is_closing():
            return
        scope = cycle.scope if cycle is not None else {}
        route = f"{scope['method']} {scope['path']}" if cycle is not None else "(incomplete request head)"
        logs.request_failed(408, route, request_id_of(scope.get("headers", ())), reason + ": slow client disconnected")
        if cycle is None or not cycle.response_started:
            body = error_body(reason + ": send the request without pauses")
            write = getattr(self._transport, "write")
            write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                  b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self._transport.close()


class LingeringTransport:
    """uvicorn's transport, with two changes.

    ``close()`` after an answer given before the request's body was read keeps reading (the
    protocol drops the bytes) until ``linger_s()`` is up.

    Writes made in one turn of the event loop leave in one ``send()``: uvicorn writes an
    answer's head and body separately, and on a TCP_NODELAY socket that is two system calls
    and two packets, which wake the client twice (on the 2-core VM the client is often on
    the same cores). Joined at the end of the turn (``call_soon``), they cost one of each.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self.linger_s: Callable[[], float] = lambda: 0.0
        self.lingering = False
        self._pending: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def write_now(self, *parts: bytes) -> None:
        """``parts`` sent now, in one system call: after what this turn already wrote, if anything."""
        if self._pending:
            self._pending.extend(parts)
        elif not self._transport.is_closing():
            self._transport.writelines(parts)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)  # one writev() on uvloop, no copy

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        self._flush()  # what was written before close() still goes
        if self.lingering or self._transport.is_closing():
            return
        delay = self.linger_s()
        if delay <= 0:
            self._transport.close()
            return
        self.lingering = True
        self._transport.resume_reading()  # uvicorn paused reading while the body went unread
        self._loop.call_later(delay, self._transport.close)


def timed_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools where installed, as uvicorn's "auto" picks) with RequestDeadlines
    and LingeringTransport."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
        idles = True  # the keep-alive on the connection's deadline: httptools' on_response_complete is replaced below
    except ImportError:  # pragma: no cover - kserve installs uvicorn[standard], which has httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
        idles = False  # h11's keeps uvicorn's own keep-alive timer

    class TimedProtocol(Base):  # type: ignore[valid-type,misc]
        timed = True  # what hot_route.install checks: its transport is a LingeringTransport

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            lingering = LingeringTransport(transport, self.loop)
            super().connection_made(cast(asyncio.Transport, lingering))
            self.deadlines = RequestDeadlines(self.loop, transport, lambda: self.cycle,
                                              self.timeout_keep_alive if idles else None)
            self.lingering = lingering
            lingering.linger_s = self.deadlines.linger_s

        def data_received(self, data: bytes) -> None:
            if self.lingering.lingering:
                return  # the answer is out; what the client still sends of its body is dropped
            self.deadlines.before(len(data))
            super().data_received(data)
            self.deadlines.after(len(data))

        def connection_lost(self, exc: Exception | None) -> None:
            self.deadlines.stop()
            super().connection_lost(exc)

        if idles:
            def on_response_complete(self) -> None:
                """uvicorn's (httptools_impl), with the connection's deadline for its keep-alive timer."""
                self.server_state.total_requests += 1
                if self.transport.is_closing():
                    return
                self.flow.resume_reading()
                if self.pipeline:  # a pipelined request waits: start it
                    cycle, app = self.pipeline.pop()
                    self._start_asgi_task(cycle, app)
                else:
                    self.deadlines.idle()

    return TimedProtocol
