"""A lean HTTP/1.1 client for TorchServe's inference REST API, on kept-alive connections.

Why not gRPC or httpx for predictions: measured on the 2-core VM against the same
TorchServe, one grpc.aio Predictions call cost our process 375-480 us of CPU and this
client 67 us (httpx and aiohttp cost several times more as well); our process shares
the cores with Java and the workers, so that CPU is throughput. TorchServe's REST API
also carries what its gRPC API drops: a status per request of a batch
(``context.set_response_status``), its request and queue-latency metrics, and
explanations.

It speaks only what TorchServe's Netty frontend answers: one request at a time per
connection, responses with Content-Length or chunked bodies (httptools parses both,
as it does for uvicorn). A connection that fails, times out, or whose request was
cancelled is closed, never reused; idle ones are kept up to ``max_idle``.

Response timeouts cost no timer per request: each connection has one ``timers.Deadline``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Mapping

import httptools

from .timers import Deadline


class TransportError(Exception):
    """TorchServe could not be reached, or the connection broke before a full answer."""


class ResponseTimeout(TransportError):
    """No full answer within the deadline."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.closed = False
        self._timeout_s = 0.0  # the request in flight's time to answer
        self._deadline = Deadline(asyncio.get_running_loop(), self._timed_out)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"TorchServe sent a malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(TransportError(f"connection to TorchServe lost: {exc or 'closed by TorchServe'}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.body = b"".join(self.body), []
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    def _fail(self, exc: TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        self._deadline.cancel()
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, timeout_s: float) -> asyncio.Future[tuple[int, bytes]]:
        """The answer to ``data``: ResponseTimeout unless whole within ``timeout_s``."""
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self._timeout_s = timeout_s
        self._deadline.set(timeout_s)
        self.transport.write(data)
        return self.waiter

    def _timed_out(self) -> None:
        if self.waiter is None or self.closed:
            return  # idle since: the answer came in time
        self._fail(ResponseTimeout(f"TorchServe did not answer within {self._timeout_s:.0f}s"))


class Pool:
    """Kept-alive connections to one ``host:port``; each request takes one for itself."""

    def __init__(self, host: str, port: int, max_idle: int = 64, connect_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        self._host_header = f"{host}:{port}".encode("latin-1")
        self._idle: list[_Connection] = []
        self._max_idle = max_idle
        self._connect_timeout_s = connect_timeout_s

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        try:
            return await asyncio.wait_for(self._connect(), self._connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise TransportError(f"cannot connect to TorchServe at {self.host}:{self.port}: {exc}") from None

    async def _connect(self) -> _Connection:
        """A new connection (benchmarks/uds_vs_tcp.py makes it over a unix socket instead)."""
        _, protocol = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        return protocol

    def _release(self, connection: _Connection) -> None:
        if connection.closed or len(self._idle) >= self._max_idle:
            connection.close()
        else:
            self._idle.append(connection)

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        """(status, body) of one request; TransportError when no full answer came."""
        head = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"Host: " + self._host_header,
                b"Content-Length: " + str(len(body)).encode()]
        head += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
        message = b"\r\n".join(head) + b"\r\n\r\n" + body
        connection = await self._acquire()
        answer = connection.send(message, timeout_s)
        done = False
        try:
            result = await answer
            done = True
            return result
        finally:
            if done:
                self._release(connection)
            else:  # failed, timed out or cancelled mid-request: its answer must never reach another caller
                connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class Multipart:
    """multipart/form-data bodies with one file part per input (the worker gets bytes per key).

    The boundary is random per process; a request whose bytes happen to contain it gets
    a fresh one, so no input can end a part early. Input names are checked by the codec
    (codec.input_name: no quotes or line breaks).
    """

    def __init__(self) -> None:
        self.boundary = secrets.token_hex(16).encode()

    def encode(self, row: Mapping[str, bytes]) -> tuple[str, bytes]:
        """(content type, body) for one row."""
        boundary = self.boundary
        while any(boundary in value for value in row.values()):
            boundary = secrets.token_hex(16).encode()
        parts = []
        for name, value in row.items():
            field = name.encode("utf-8")
            parts.append(
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + field + b'"; filename="' + field
                + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + value + b"\r\n"
            )
        parts.append(b"--" + boundary + b"--\r\n")
        return "multipart/form-data; boundary=" + boundary.decode(), b"".join(parts)
