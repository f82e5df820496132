"""Our process's CPU per v1 request through the HTTP protocol, in-process, to the microsecond.

front_cost.py times our ASGI stack with the HTTP server left out; rest_floor.py measures whole
fronts under load, where rounds spread by 15-30%. This one feeds the same kept-alive v1 request,
as bytes, to each HTTP protocol object on a uvloop loop, with a transport that only collects what
is written, and TorchServe's hop answered at once with a fixed answer (front_cost.FixedAnswer):
everything our process does for a request except the system calls. Systems, interleaved rounds:
  hot          the server's protocol: deadlines.py's, with the hot route (hot_route.py)
  asgi         the same protocol without the hot route: uvicorn's ASGI cycle, CountRequests, FastPath
  uvicorn-bare uvicorn's own httptools protocol with a bare ASGI app doing only the hop
               (rest_fronts.uvicorn_app)
  bare         a bare httptools protocol doing only the hop (rest_fronts.Front): the floor

  .venv/bin/python benchmarks/protocol_cost.py [--requests 10000] [--rounds 7]
Writes benchmarks/results/<date>-protocol-cost.json and prints a table (fastest round and median).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import uvloop  # noqa: E402
from uvicorn.config import Config  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from benchmarks import front_cost, rest_fronts  # noqa: E402
from benchmarks.grpc_floor import write_report  # noqa: E402
from benchmarks.run import add_tag_option  # noqa: E402
from kserve_torchserve.serving import codec, hot_route  # noqa: E402
from kserve_torchserve.serving.deadlines import timed_protocol  # noqa: E402
from kserve_torchserve.serving.rest_fastpath import FastPath  # noqa: E402

Factory = Callable[[], asyncio.Protocol]


class Collector:
    """A transport that keeps what is written and resolves ``answered`` once a whole answer is in."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[bytes] | None = None
        self.written = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data
        head, found, body = self.written.partition(b"\r\n\r\n")
        if not found:
            return
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        if len(body) >= length and self.answered is not None and not self.answered.done():
            self.written = b""
            self.answered.set_result(head)

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None  # uvicorn's keep-alive timer, on a connection an earlier round left idle

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


def uvicorn_factory(app: Any, http: Any) -> Factory:
    config = Config(app=app, http=http, loop="uvloop", access_log=False, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    return lambda: config.http_protocol_class(config=config, server_state=state, app_state={})  # type: ignore[no-any-return,call-arg]


async def cpu_us(factory: Factory, request: bytes, requests: int) -> float:
    """Process CPU microseconds per request over ``requests`` requests on one kept-alive connection."""
    loop = asyncio.get_running_loop()
    transport = Collector()
    protocol = factory()
    protocol.connection_made(transport)  # type: ignore[arg-type]

    async def one() -> bytes:
        transport.answered = loop.create_future()
        protocol.data_received(request)  # type: ignore[attr-defined]
        return await transport.answered

    head = await one()
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"answered {head[:40]!r}")
    for _ in range(requests // 4):  # warm-up
        await one()
    started = time.process_time()
    for _ in range(requests):
        await one()
    return (time.process_time() - started) / requests * 1e6


def systems(answer: bytes) -> dict[str, Factory]:
    stack = front_cost.front(answer)  # CountRequests -> FastPath -> DataPlane -> TorchServeModel, one ready model
    fixed = front_cost.FixedAnswer(answer)

    async def forward(body: bytes) -> bytes:
        return codec.v1_answer(await fixed.send_v1("predictions", "digits", None, body, 120))

    fastpath = stack.app
    assert isinstance(fastpath, FastPath)
    return {
        "hot": uvicorn_factory(stack, hot_route.hot_protocol(timed_protocol(), fastpath)),
        "asgi": uvicorn_factory(stack, timed_protocol()),
        "uvicorn-bare": uvicorn_factory(rest_fronts.uvicorn_app(forward), "httptools"),
        "bare": lambda: rest_fronts.Front(forward),
    }


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(64)
    body = orjson.dumps({"instances": [[rng.random() for _ in range(64)]]})
    request = (b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    factories = systems(orjson.dumps([rng.random() for _ in range(10)]))
    runs: dict[str, list[float]] = {name: [] for name in factories}
    for _ in range(rounds):
        for name, factory in factories.items():
            runs[name].append(round(await cpu_us(factory, request, requests), 2))
    return {"requests_per_round": requests, "rounds": runs,
            "cpu_us_per_request": {name: min(values) for name, values in runs.items()},
            "median_us_per_request": {name: round(statistics.median(values), 1) for name, values in runs.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=7)
    add_tag_option(parser)
    args = parser.parse_args()
    write_report(uvloop.run(measure(args.requests, args.rounds)), "protocol-cost" + args.tag, show)
    return 0


def show(report: dict[str, Any]) -> None:
    print("system          fastest us  median us  (CPU per v1 request, in-process, 64 floats)")
    for name, fastest in report["cpu_us_per_request"].items():
        print(f"  {name:14s} {fastest:9.1f}  {report['median_us_per_request'][name]:9.1f}")

if __name__ == "__main__":
    sys.exit(main())
