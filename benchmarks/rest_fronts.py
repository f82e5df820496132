"""The leanest Python v1 REST fronts we can write, to measure the floor under ours.

  python benchmarks/rest_fronts.py echo             <port> <torchserve work dir> [model]
  python benchmarks/rest_fronts.py forward          <port> <torchserve work dir> [model]
  python benchmarks/rest_fronts.py uvicorn-forward  <port> <torchserve work dir> [model]

``echo`` reads each HTTP request (httptools, the parser uvicorn uses, on uvloop) and answers a
fixed v1 body: the cost of an HTTP/1.1 server in Python with no upstream. ``forward`` sends the
v1 body, unparsed, to TorchServe as our model does (``TorchServeClient.send_v1``: our envelope,
kept-alive connections) and splices the answers into ``{"predictions": [...]}``
(``codec.v1_answer``): everything our v1 path must do, and nothing else: no routing, limits,
deadlines, metrics, versions, error mapping, logging or kserve. ``uvicorn-forward`` is the same
forward as a bare ASGI app under uvicorn (httptools, uvloop, no access log): what uvicorn's
request cycle adds. benchmarks/rest_floor.py runs them beside ours and TorchServe's REST.
Benchmark code only: it answers every request as a v1 predict of one model, never an error page.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import httptools
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.grpc_fronts import client_for  # noqa: E402
from kserve_torchserve.serving import codec  # noqa: E402

Answer = Callable[[bytes], Awaitable[bytes]]
_ECHO = b'{"predictions":[[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]]}'


class Front(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, one request at a time per connection (as wrk sends them)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.tasks: set[asyncio.Task[None]] = set()  # held, or the loop may collect one mid-answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        task = asyncio.get_running_loop().create_task(self._respond(body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _respond(self, body: bytes) -> None:
        payload = await self.answer(body)
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)


def answers(kind: str, work_dir: Path, model: str = "digits") -> Answer:
    if kind == "echo":
        async def echo(body: bytes) -> bytes:
            return _ECHO
        return echo
    client = client_for(work_dir)

    async def forward(body: bytes) -> bytes:
        return codec.v1_answer(await client.send_v1("predictions", model, None, body, 120))
    return forward


def uvicorn_app(answer: Answer) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                  send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        payload = await answer(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
    return app


async def serve(kind: str, port: int, work_dir: Path, model: str = "digits") -> None:
    if kind == "uvicorn-forward":
        import uvicorn

        config = uvicorn.Config(uvicorn_app(answers("forward", work_dir, model)), host="127.0.0.1", port=port,
                                loop="none", http="httptools", lifespan="off", access_log=False, log_level="warning")
        await uvicorn.Server(config).serve()
        return
    answer = answers(kind, work_dir, model)
    server = await asyncio.get_running_loop().create_server(lambda: Front(answer), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in ("echo", "forward", "uvicorn-forward"):
        raise SystemExit(__doc__)
    uvloop.run(serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), *sys.argv[4:]))
