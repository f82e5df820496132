"""http_pool against real sockets: a small asyncio server that answers as told."""

from __future__ import annotations

import asyncio
import contextlib
from email.parser import BytesParser
from email.policy import HTTP
from typing import AsyncIterator, Awaitable, Callable

import pytest

from kserve_torchserve.backend import http_pool
from kserve_torchserve.backend.ports import free_ports

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.AbstractServer, int, list[int]]:
    """A server calling ``handler(request_bytes, writer)`` per request; returns connections seen."""
    connections: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await handler(head + await reader.readexactly(length), writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


@contextlib.asynccontextmanager
async def _pool_for(handler: Handler) -> AsyncIterator[tuple[http_pool.Pool, list[int]]]:
    """A pool on a server calling ``handler``, and the connections that server saw."""
    server, port, connections = await _serve(handler)
    pool = http_pool.Pool("127.0.0.1", port)
    try:
        yield pool, connections
    finally:
        pool.close()
        server.close()


def _ok(body: bytes, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async def echo(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(_ok(request.split(b"\r\n\r\n", 1)[1]))

    async with _pool_for(echo) as (pool, connections):
        for i in range(5):
            assert await pool.request("POST", "/p", f"body {i}".encode(), {"X": "1"}, 5) == (200, f"body {i}".encode())
        assert len(connections) == 1
        # Concurrent requests each get their own connection, and their own answer.
        answers = await asyncio.gather(*(pool.request("POST", "/p", bytes([i]) * 3, {}, 5) for i in range(8)))
        assert answers == [(200, bytes([i]) * 3) for i in range(8)]


async def test_chunked_answers_and_error_statuses_are_read_whole() -> None:
    async def chunked(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 422 Unprocessable\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    async with _pool_for(chunked) as (pool, _):
        assert await pool.request("POST", "/p", b"x", {}, 5) == (422, b"hello world")


async def test_a_connection_closed_by_the_server_is_not_reused() -> None:
    async def close_after(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with _pool_for(close_after) as (pool, connections):
        assert await pool.request("POST", "/p", b"", {}, 5) == (200, b"ok")
        assert await pool.request("POST", "/p", b"", {}, 5) == (200, b"ok")
        assert len(connections) == 2


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    async def silent(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with _pool_for(silent) as (pool, _):
        with pytest.raises(http_pool.ResponseTimeout, match="within"):
            await pool.request("POST", "/p", b"", {}, 0.2)
        assert not pool._idle  # its late answer must never reach another caller


async def test_each_request_on_a_kept_alive_connection_has_its_own_deadline() -> None:
    """One timer per connection: a later request is not cut at an earlier one's deadline, and a shorter
    timeout than the one before still ends in time."""
    delays = [0.0, 0.5, 0.0, 30.0]  # how long the server takes to answer each request

    async def paced(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delays.pop(0))
        writer.write(_ok(b"ok"))

    # Margins of 0.3 s and more, so that a busy machine's late event loop cannot decide the test.
    async with _pool_for(paced) as (pool, connections):
        assert await pool.request("POST", "/p", b"", {}, 0.6) == (200, b"ok")
        await asyncio.sleep(0.3)  # the first request's 0.6 s end while the second is in flight
        assert await pool.request("POST", "/p", b"", {}, 1.0) == (200, b"ok")
        await asyncio.sleep(0.6)  # the second's deadline passes: the connection has no timer now
        assert await pool.request("POST", "/p", b"", {}, 60) == (200, b"ok")  # its timer: 60 s away
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(http_pool.ResponseTimeout, match="within 0s"):
            await asyncio.wait_for(pool.request("POST", "/p", b"", {}, 0.1), 3)  # not at the 60 s timer
        assert loop.time() - started < 1 and len(connections) == 1


async def test_a_dropped_connection_mid_request_and_a_refused_one_are_transport_errors() -> None:
    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    async with _pool_for(hang_up) as (pool, _):
        with pytest.raises(http_pool.TransportError, match="lost"):
            await pool.request("POST", "/p", b"", {}, 5)
    (closed_port,) = free_ports(1)
    with pytest.raises(http_pool.TransportError, match="cannot connect"):
        await http_pool.Pool("127.0.0.1", closed_port).request("POST", "/p", b"", {}, 5)


async def test_malformed_answers_are_transport_errors() -> None:
    async def garbage(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    async with _pool_for(garbage) as (pool, _):
        with pytest.raises(http_pool.TransportError, match="malformed"):
            await pool.request("POST", "/p", b"", {}, 5)


async def test_a_cancelled_request_closes_its_connection() -> None:
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        writer.write(_ok(b"late"))

    async with _pool_for(slow) as (pool, _):
        task = asyncio.ensure_future(pool.request("POST", "/p", b"", {}, 5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not pool._idle
        assert await pool.request("POST", "/p", b"", {}, 5) == (200, b"late")


def test_multipart_parts_carry_each_input_as_bytes() -> None:
    multipart = http_pool.Multipart()
    row = {"data": b"\x00\x01binary\r\n--", "extra": '{"k": 1}'.encode()}
    content_type, body = multipart.encode(row)
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
             for part in message.iter_parts()}
    assert parts == row


def test_multipart_boundary_changes_when_an_input_contains_it() -> None:
    multipart = http_pool.Multipart()
    clash = b"prefix--" + multipart.boundary + b"--suffix"
    content_type, body = multipart.encode({"data": clash})
    boundary = content_type.split("boundary=")[1].encode()
    assert boundary != multipart.boundary and boundary not in clash
    assert body.count(b"--" + boundary) == 2
