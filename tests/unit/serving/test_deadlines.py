"""Slow clients against a real uvicorn server with our protocol (timeouts shortened), over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, AsyncIterator

import pytest
import uvicorn

from kserve_torchserve.backend.ports import free_ports
from kserve_torchserve.serving import deadlines


async def app(scope: Any, receive: Any, send: Any) -> None:
    """/refuse answers 413 without reading the body; anything else reads it and answers its length."""
    if scope["type"] != "http":
        return
    size = 0
    if scope["path"] != "/refuse":
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 413 if scope["path"] == "/refuse" else 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _serving(keep_alive_s: int) -> AsyncIterator[uvicorn.Server]:
    """``app`` behind our protocol on a free port, with uvicorn's ``timeout_keep_alive``."""
    (free,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free, http=deadlines.timed_protocol(),
                                           lifespan="off", log_config=None, timeout_keep_alive=keep_alive_s))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def port(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(deadlines, "HEADER_TIMEOUT_S", 0.4)
    monkeypatch.setattr(deadlines, "BODY_TIMEOUT_S", 0.4)
    monkeypatch.setattr(deadlines, "BODY_MIN_RATE", 1000)
    async with _serving(keep_alive_s=30) as server:
        yield server.config.port


@pytest.fixture
async def idling(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[uvicorn.Server]:
    """A server whose kept-alive connections may idle 1 s, and whose heads have 5 s."""
    monkeypatch.setattr(deadlines, "HEADER_TIMEOUT_S", 5.0)
    async with _serving(keep_alive_s=1) as server:
        yield server


def _head(path: str, length: int, close: bool = False) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


async def _until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    started = time.monotonic()
    return await asyncio.wait_for(reader.read(), 10), time.monotonic() - started


async def test_a_connection_that_sends_nothing_is_closed_quietly(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer, took = await _until_closed(reader)
    assert answer == b"" and 0.3 < took < 3
    writer.close()


async def test_a_head_dribbled_past_its_time_is_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def dribble() -> None:
        for byte in _head("/echo", 2):
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)

    dribbling = asyncio.ensure_future(dribble())
    answer, took = await _until_closed(reader)
    dribbling.cancel()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and took < 3
    assert json.loads(answer.split(b"\r\n\r\n")[1]) == {
        "error": "request head not received within 0 s: send the request without pauses"}
    writer.close()


async def test_a_body_below_the_minimum_rate_is_408_one_that_keeps_up_is_served(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head("/echo", 100))
    first = b""
    for _ in range(100):  # 10 bytes/s, against a minimum of 1000 after 0.4 s
        writer.write(b"x")
        try:
            first = await asyncio.wait_for(reader.read(1), 0.1)  # answered: stop dribbling
            break
        except asyncio.TimeoutError:
            continue
    answer, _ = await _until_closed(reader)
    assert (first + answer).startswith(b"HTTP/1.1 408 "), first + answer
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head("/echo", 1200, close=True))
    for _ in range(12):  # 100 bytes every 0.05 s: 2000 bytes/s, for 0.6 s, past the first 0.4 s
        writer.write(b"x" * 100)
        await asyncio.sleep(0.05)
    answer, _ = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"size": 1200}')
    writer.close()


async def test_a_kept_alive_connection_waits_idle_but_its_next_head_is_timed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head("/echo", 2) + b"ok")
    assert (await reader.readuntil(b'{"size": 2}')).startswith(b"HTTP/1.1 200 ")
    await asyncio.sleep(0.8)  # idle past the head timeout: uvicorn's keep-alive (30 s) governs idling
    assert not reader.at_eof()
    writer.write(b"POST /echo HT")  # the next request's head starts, and stalls
    answer, took = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 ") and took < 3
    writer.close()


async def test_an_idle_kept_alive_connection_is_closed_after_timeout_keep_alive(idling: uvicorn.Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", idling.config.port)
    writer.write(_head("/echo", 2) + b"ok")
    assert (await reader.readuntil(b'{"size": 2}')).startswith(b"HTTP/1.1 200 ")
    # The connection's deadline times the idling: uvicorn's own per-request timer is never armed.
    assert [getattr(p, "timeout_keep_alive_task") for p in idling.server_state.connections] == [None]
    answer, took = await _until_closed(reader)
    assert answer == b"" and 0.9 < took < 4  # closed quietly at 1 s, long before the head's 5 s
    writer.close()


async def test_a_connection_in_use_outlives_its_keep_alive(idling: uvicorn.Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", idling.config.port)
    for _ in range(4):  # 2.4 s of requests 0.6 s apart, on a 1-s keep-alive
        writer.write(_head("/echo", 2) + b"ok")
        assert (await reader.readuntil(b'{"size": 2}')).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.6)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n")  # a head, and a pause
    await asyncio.sleep(1.5)  # past the keep-alive: a request under way is timed as a request, not as idling
    writer.write(b"ok")
    assert (await reader.readuntil(b'{"size": 2}')).startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_each_head_is_timed_from_its_own_first_byte(port: int) -> None:
    """The connection's one timer, set for the first request's head, must not cut the second one short."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head("/echo", 2) + b"ok")
    assert (await reader.readuntil(b'{"size": 2}')).startswith(b"HTTP/1.1 200 ")
    await asyncio.sleep(0.25)  # the first head's 0.4 s end before the second's
    writer.write(b"POST /echo HT")
    answer, took = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 408 ") and 0.3 < took < 3
    writer.close()


class _Handle:
    def __init__(self, loop: "_Clock", when: float, callback: Any) -> None:
        self.loop, self.at, self.callback, self.cancelled = loop, when, callback, False

    def when(self) -> float:  # asyncio's and uvloop's TimerHandle.when()
        return self.at

    def cancel(self) -> None:
        self.cancelled = True


class _Clock:
    """The loop RequestDeadlines uses: a clock moved by hand, and the timers it was asked for."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> _Handle:
        self.timers.append(_Handle(self, when, callback))
        return self.timers[-1]

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every live timer due by then, in order."""
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if not t.cancelled and t.at <= end), key=lambda t: t.at)
            if not due:
                break
            self.now = max(self.now, due[0].at)
            due[0].cancelled = True  # fired
            due[0].callback()
        self.now = end


class _Cycle:
    def __init__(self) -> None:
        self.more_body, self.response_complete, self.response_started = False, False, False
        self.scope = {"method": "POST", "path": "/x", "headers": []}


def test_a_busy_kept_alive_connection_keeps_one_timer_and_a_stalled_head_is_still_cut(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadlines, "HEADER_TIMEOUT_S", 10.0)
    clock, transport = _Clock(), _Recorder()
    transport.write = lambda data: transport.sends.append(data)  # type: ignore[attr-defined]
    current: list[_Cycle | None] = [None]
    timed = deadlines.RequestDeadlines(clock, transport, lambda: current[0], 5.0)  # type: ignore[arg-type]
    for _ in range(1500):  # 1500 requests, each head and body in one packet, 10 ms apart, each answer kept alive
        timed.before(100)
        cycle = _Cycle()
        current[0] = cycle
        timed.after(100)
        cycle.response_complete = True
        timed.idle()
        clock.advance(0.01)
    assert len(clock.timers) <= 8  # a few per 10 s of requests, not one per request
    timed.before(10)  # the next head starts, and stalls: its 10 s end after the live timer's
    clock.advance(9.9)
    assert transport.sends == [] and not transport.closed
    clock.advance(0.2)
    assert transport.sends[0].startswith(b"HTTP/1.1 408 ") and transport.closed


async def test_a_body_refused_unread_is_dropped_so_the_client_reads_its_answer(port: int) -> None:
    """urllib's way: the whole body first (Connection: close), then the answer; not a connection reset."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b"x" * (8 << 20)  # past every socket buffer: without lingering, the server's close resets it
    writer.write(_head("/refuse", len(body), close=True) + body)
    await writer.drain()
    answer, _ = await _until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 413 ")
    writer.close()


class _Recorder:
    """A transport that records what reaches the socket: each writelines() is one send."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def writelines(self, chunks: list[bytes]) -> None:
        self.sends.append(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_writes_of_one_turn_leave_together_and_close_sends_what_was_written() -> None:
    loop = asyncio.get_running_loop()
    recorder = _Recorder()
    transport = deadlines.LingeringTransport(recorder, loop)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert recorder.sends == []  # not yet: at the end of this turn of the loop
    await asyncio.sleep(0)
    assert recorder.sends == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"last")
    transport.close()
    assert recorder.sends[-1] == b"last" and recorder.closed
    transport.write(b"after close")
    await asyncio.sleep(0)
    assert recorder.sends[-1] == b"last"  # a closed socket gets nothing more


async def test_uvicorn_writes_an_answer_through_it_in_one_send(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    flush = deadlines.LingeringTransport._flush

    def counted(self: deadlines.LingeringTransport) -> None:
        flushed.append(len(self._pending))
        flush(self)

    monkeypatch.setattr(deadlines.LingeringTransport, "_flush", counted)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head("/x", 2) + b"ab")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 5)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"size": 2}')
    assert 2 in flushed  # uvicorn's head and body writes, one send
    writer.close()
