"""The hot route (the protocol answering plain predict requests itself) against uvicorn's ASGI way.

Two real uvicorn servers in-process, over real sockets, on the same app and DataPlane (TorchServe
replaced by the fake client of fake_torchserve.py): one with the hot route, one without (the
protocol as it was). Every request must get the same answer from both; which way a request took
shows in which counters counted it (the hot route counts its own).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kserve_torchserve.backend.ports import free_ports
from kserve_torchserve.serving import deadlines, hot_route
from kserve_torchserve.serving.metrics import CountRequests, RequestCounters
from kserve_torchserve.serving.rest_fastpath import FastPath
from tests.unit.serving.test_rest_fastpath import CASES, _app

Answer = tuple[int, dict[str, str], bytes]


class Pair:
    """The same stack served twice: ``hot`` (port, counters of the hot route) and ``asgi`` (without it)."""

    def __init__(self) -> None:
        app, dataplane = _app()
        self.fastpath = FastPath(app, dataplane, max_body_bytes=1000)
        self.hot_counts, self.asgi_counts = RequestCounters(), RequestCounters()
        self.ports = free_ports(2)
        stack = CountRequests(self.fastpath, self.asgi_counts)
        self.configs = [uvicorn.Config(stack, host="127.0.0.1", port=port, http=deadlines.timed_protocol(),
                                       lifespan="off", log_config=None, access_log=False)
                        for port in self.ports]
        hot_route.install(self.configs[0], self.fastpath, self.hot_counts)
        self.servers = [uvicorn.Server(config) for config in self.configs]

    def hot_total(self) -> float:
        return sum(self.hot_counts.by_class.values())

    def asgi_total(self) -> float:
        return sum(self.asgi_counts.by_class.values())


@pytest.fixture(autouse=True)
def access_log_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the server runs (__main__ gives uvicorn.access no handler below DEBUG); pytest gives every logger
    its capturing handlers, which uvicorn would take for an access log to write."""
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "hasHandlers", lambda: False)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    servers = Pair()
    serving = [asyncio.ensure_future(server.serve()) for server in servers.servers]
    while not all(server.started for server in servers.servers):
        await asyncio.sleep(0.01)
    try:
        yield servers
    finally:
        for server in servers.servers:
            server.should_exit = True
        await asyncio.gather(*serving)


def request(path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST",
            version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: t", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if "transfer-encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return int(status_line.split()[1]), headers, body


async def exchange(port: int, *raw: bytes, closes: bool = False, wait_s: float = 5.0) -> tuple[list[Answer], bool]:
    """Send ``raw`` (each a whole request, all at once: pipelined when several) and read an answer for each;
    with ``closes``, also whether the server then closed the connection (waiting up to ``wait_s`` to see:
    long, so that a busy machine cannot make a close look missing; short where staying open is expected)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(raw))
        await writer.drain()
        answers = [await read_answer(reader) for _ in raw]
        if not closes:
            return answers, False
        try:
            closed = await asyncio.wait_for(reader.read(1), wait_s) == b""
        except asyncio.TimeoutError:
            closed = False
        return answers, closed
    finally:
        writer.close()


def comparable(answer: Answer, sent: Any) -> tuple[int, dict[str, str], Any]:
    status, headers, body = answer
    headers = {k: v for k, v in headers.items() if k not in ("date", "ce-id", "ce-time")}  # each answer's own
    content: Any = body
    if status == 200 and body.startswith(b"{") and b'"outputs"' in body and \
            not (isinstance(sent, dict) and "id" in sent):
        content = json.loads(body)
        content.pop("id")  # a random id, generated for a request without one
    return status, headers, content


def plain(path: str, raw: bytes, headers: dict[str, str]) -> bool:
    """The requests the hot route takes: non-empty and JSON (or undeclared) to a predict route."""
    return bool(raw) and headers.get("content-type", "application/json").split(";")[0] == "application/json"


@pytest.mark.parametrize("path,body,headers", CASES)
async def test_every_case_is_answered_the_same_hot_or_not(pair: Pair, path: str, body: Any,
                                                          headers: dict[str, str]) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if raw and len(raw) > 1000:
        raw = raw[:1000]  # the pair's limit: what is over it is another test's
    hot, asgi = [(await exchange(port, request(path, raw, headers)))[0][0] for port in pair.ports]
    assert comparable(hot, body) == comparable(asgi, body)
    assert pair.hot_total() == (1 if plain(path, raw, headers) else 0)
    assert pair.asgi_total() == 2 - pair.hot_total()


V2 = json.dumps({"id": "a", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}).encode()
V1 = b'{"instances": [[1, 2]]}'


@pytest.mark.parametrize("raw,hot", [
    (request("/v1/models/m:predict", V1), True),
    (request("/v1/models/m:predict", V1, {"content-type": "application/json; charset=utf-8"}), True),
    (request("/v2/models/m/infer", V2), True),  # no content type: read as JSON, as the ASGI way does
    (request("/v1/models/m:predict", V1, {"x-model-version": "1.0"}), True),
    (request("/v1/models/m:predict", V1, version="1.0"), True),
    (request("/v1/models/m:predict", b"8\r\n" + V1[:8] + b"\r\n0\r\n\r\n", {"transfer-encoding": "chunked"}),
     False),
    (request("/v1/models/m:predict", V1, {"expect": "100-continue"}), False),
    (request("/v1/models/m:predict", V1, {"content-type": "text/plain"}), False),
    (request("/v1/models/m:predict", V1, {"content-type": "application/vnd.x+json"}), False),
    (request("/v1/models/m:predict", V1, {"ce-specversion": "1.0", "ce-type": "t", "ce-source": "s",
                                          "ce-id": "1"}), False),
    (request("/v2/models/m/versions/1.0/infer", V2), False),
    (request("/v2/models/m/infer?model_version=1.0", V2), False),
    (request("/v1/models/%6D:predict", V1), False),
    (request("/v1/models/m:explain", V1), False),
    (request("/v1/models/m:predict", b""), False),
    (request("/v1/models/m:predict", b"x" * 1001), False),
    (request("/v1/models/m", b"", method="GET"), False),
])
async def test_plain_requests_take_the_hot_route_and_others_the_asgi_way(pair: Pair, raw: bytes, hot: bool) -> None:
    (answers, _), (expected, _) = [await exchange(port, raw) for port in pair.ports]
    assert comparable(answers[0], None) == comparable(expected[0], None)
    counted_by_asgi = 0 if raw.startswith(b"GET") else 2  # CountRequests counts inference requests only
    assert (pair.hot_total(), pair.asgi_total()) == ((1, 1) if hot else (0, counted_by_asgi))


async def test_kept_alive_and_pipelined_requests_are_answered_in_order(pair: Pair) -> None:
    # A hot request, one the ASGI way, and a hot one again, in one write: each waits for the one before.
    raws = [request("/v1/models/m:predict", b'{"instances": [[1, 2]]}'),
            request("/v1/models/m:predict", b'{"instances": [[3]]}', {"content-type": "text/plain"}),
            request("/v1/models/m:predict", b'{"instances": [[5, 5], [6]]}')]
    answers, closed = await exchange(pair.ports[0], *raws, closes=True, wait_s=0.3)
    assert [(status, body) for status, _, body in answers] == [
        (200, b'{"predictions":[3]}'), (415, answers[1][2]), (200, b'{"predictions":[10,6]}')]
    assert not closed
    assert pair.hot_counts.by_class["2XX"] == 1  # the third waited behind the second: uvicorn's queue
    again, _ = await exchange(pair.ports[0], raws[0], raws[0])
    assert [body for _, _, body in again] == [b'{"predictions":[3]}'] * 2


@pytest.mark.parametrize("raw", [request("/v1/models/m:predict", V1, version="1.0"),
                                 request("/v1/models/m:predict", V1, {"connection": "close"})])
async def test_a_request_that_ends_its_connection_is_answered_then_closed(pair: Pair, raw: bytes) -> None:
    (answer,), closed = await exchange(pair.ports[0], raw, closes=True)
    assert answer[0] == 200 and answer[1]["connection"] == "close" and closed
    assert pair.hot_total() == 1


async def test_uvicorns_default_headers_are_sent(pair: Pair) -> None:
    (hot,), _ = await exchange(pair.ports[0], request("/v1/models/m:predict", V1))
    (asgi,), _ = await exchange(pair.ports[1], request("/v1/models/m:predict", V1))
    assert set(hot[1]) == set(asgi[1]) == {"date", "server", "content-type", "content-length"}


async def test_a_body_that_comes_too_slowly_is_408_on_the_hot_route_too(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadlines, "BODY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(deadlines, "BODY_MIN_RATE", 1000)
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.ports[0])
    try:
        writer.write(request("/v1/models/m:predict", V1)[:-5])  # the head, and the body but its last bytes
        status, _, body = await read_answer(reader)
        assert status == 408 and b"request body not received in time" in body
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    assert pair.hot_total() == 0  # never answered: its body never came


class Blocked:
    """FastPath.respond held until ``release``: a TorchServe that takes its time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fastpath: FastPath) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = asyncio.Event()
        respond: Callable[..., Awaitable[Any]] = fastpath.respond

        async def held(*args: Any) -> Any:
            self.started.set()
            await self.release.wait()
            try:
                return await respond(*args)
            finally:
                self.finished.set()

        monkeypatch.setattr(fastpath, "respond", held)


async def test_a_client_gone_before_its_answer_gets_none_and_the_server_serves_on(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    blocked = Blocked(monkeypatch, pair.fastpath)
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.ports[0])
    writer.write(request("/v1/models/m:predict", V1))
    await asyncio.wait_for(blocked.started.wait(), 5)
    writer.close()
    await asyncio.sleep(0.1)  # the server sees the connection lost
    blocked.release.set()
    await asyncio.wait_for(blocked.finished.wait(), 5)
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    (answer,), _ = await exchange(pair.ports[0], request("/v1/models/m:predict", V1))
    assert answer[0] == 200


async def test_a_server_shutting_down_finishes_the_answer_and_closes(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = Blocked(monkeypatch, pair.fastpath)
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.ports[0])
    try:
        writer.write(request("/v1/models/m:predict", V1))
        await asyncio.wait_for(blocked.started.wait(), 5)
        pair.servers[0].should_exit = True  # uvicorn tells each connection to shut down, then waits for tasks
        await asyncio.sleep(0.2)
        blocked.release.set()
        status, headers, body = await read_answer(reader)
        assert (status, headers["connection"], body) == (200, "close", b'{"predictions":[3]}')
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_a_bug_below_the_answer_is_500_as_uvicorn_gives_it(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(pair.fastpath, "respond", broken)
    (answer,), closed = await exchange(pair.ports[0], request("/v1/models/m:predict", V1), closes=True)
    assert (answer[0], answer[2], closed) == (500, b"Internal Server Error", True)
    assert pair.hot_counts.by_class["5XX"] == 1
    assert pair.servers[0].server_state.total_requests == 1  # as uvicorn counts its own 500 (limit_max_requests)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


async def test_an_answer_header_a_client_could_forge_is_refused(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    async def forged(*args: Any) -> Any:
        return 200, b"{}", {"x-model-version": "1\r\nset-cookie: a=b"}

    monkeypatch.setattr(pair.fastpath, "respond", forged)
    (answer,), closed = await exchange(pair.ports[0], request("/v1/models/m:predict", V1), closes=True)
    assert answer[0] == 500 and "set-cookie" not in answer[1] and closed


async def test_answer_headers_are_checked_once_each_and_every_one_past_the_cache_still_is(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hot_route, "_LINES", {})
    monkeypatch.setattr(hot_route, "_LINES_MAX", 2)
    versions = iter(["1", "2", "1", "3", "4\r\nset-cookie: a=b"])

    async def versioned(*args: Any) -> Any:
        return 200, b"{}", {"x-model-version": next(versions)}

    monkeypatch.setattr(pair.fastpath, "respond", versioned)
    answers = [(await exchange(pair.ports[0], request("/v1/models/m:predict", V1)))[0][0] for _ in range(4)]
    assert [(a[0], a[1]["x-model-version"]) for a in answers] == [(200, "1"), (200, "2"), (200, "1"), (200, "3")]
    assert hot_route._LINES == {("x-model-version", "1"): b"x-model-version: 1\r\n",
                                ("x-model-version", "2"): b"x-model-version: 2\r\n"}  # "3": the cache was full
    (answer,), closed = await exchange(pair.ports[0], request("/v1/models/m:predict", V1), closes=True)
    assert answer[0] == 500 and "set-cookie" not in answer[1] and closed and len(hot_route._LINES) == 2


def test_it_is_installed_only_with_the_fast_path_and_only_over_our_protocol() -> None:
    app, dataplane = _app()
    for fast in (True, False):
        config = uvicorn.Config(app, http=deadlines.timed_protocol())
        before = config.http
        hot_route.install(config, FastPath(app, dataplane, fast=fast))
        assert (config.http is not before) == fast
    for other in ("auto", HttpToolsProtocol):  # no LingeringTransport to write through
        with pytest.raises(TypeError, match="timed_protocol"):
            hot_route.install(uvicorn.Config(app, http=other), FastPath(app, dataplane))


async def test_an_idle_kept_alive_connection_does_not_hold_the_last_body(pair: Pair) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.ports[0])
    try:
        writer.write(request("/v1/models/m:predict", b'{"instances": ["' + b"x" * 900 + b'"]}'))
        assert (await read_answer(reader))[0] == 200
        (protocol,) = pair.servers[0].server_state.connections
        assert isinstance(protocol, HttpToolsProtocol)
        cycle: Any = protocol.cycle  # uvicorn types it as its own cycle; here it is the hot route's
        assert type(cycle) is hot_route.HotCycle and cycle.body == b""
    finally:
        writer.close()


async def test_framing_headers_in_an_answer_are_the_protocols_own(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    async def framed(*args: Any) -> Any:  # headers uvicorn's send() would act on, not pass on
        return 200, b"{}", {"content-length": "99", "transfer-encoding": "chunked", "connection": "keep-alive, close",
                            "content-type": "application/json"}

    monkeypatch.setattr(pair.fastpath, "respond", framed)
    (answer,), closed = await exchange(pair.ports[0], request("/v1/models/m:predict", V1), closes=True)
    assert answer[1]["content-length"] == "2" and "transfer-encoding" not in answer[1] and answer[2] == b"{}"
    assert answer[1]["connection"] == "close" and closed


@pytest.mark.parametrize("setting", ["reset_contextvars", "trace"])
async def test_with_uvicorns_per_request_settings_every_request_goes_the_asgi_way(
        pair: Pair, setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if setting == "reset_contextvars":
        monkeypatch.setattr(pair.configs[0], "reset_contextvars", True)  # each request in a fresh context
    else:
        monkeypatch.setattr(logging.getLogger("uvicorn.error"), "isEnabledFor", lambda level: True)
    (answer,), _ = await exchange(pair.ports[0], request("/v1/models/m:predict", V1))
    assert answer[0] == 200 and (pair.hot_total(), pair.asgi_total()) == (0, 1)


async def test_with_uvicorns_access_log_on_every_request_goes_the_asgi_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "hasHandlers", lambda: True)  # TS_LOG_LEVEL=DEBUG
    servers = Pair()
    serving = asyncio.ensure_future(servers.servers[0].serve())
    try:
        while not servers.servers[0].started:
            await asyncio.sleep(0.01)
        (answer,), _ = await exchange(servers.ports[0], request("/v1/models/m:predict", V1))
    finally:
        servers.servers[0].should_exit = True
        await serving
    assert answer[0] == 200 and (servers.hot_total(), servers.asgi_total()) == (0, 1)
