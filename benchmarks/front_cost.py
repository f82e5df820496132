"""Our process's own Python work per v1 / v2 REST request, in-process, to the microsecond.

Under load (cpu_profile.py, rest_floor.py) our CPU per request moves +/-15% from run to run on
the 2-core VM, with Java's JIT, batch fill and the client sharing the cores: a change worth
20 us disappears in it. Here the request goes through the same objects as in the server,
CountRequests -> FastPath -> kserve's DataPlane -> TorchServeModel -> codec, with one thing
replaced: the hop to TorchServe, whose answer is a fixed one (what our envelope sends back for
one row of the digits MLP: 10 floats). No sockets, no event loop turns: only our code, timed with
the process's CPU clock over many requests after a warm-up, v1 and v2 interleaved (the fastest
round is the figure, the median is kept beside it: rounds still spread by 15-30% on this VM), and
each stage of the v2 path timed on its own in one more round (wall clock around the call, so a
stage includes what it calls, and the wrapper's own ~1 us).

It says what our layers cost relative to each other (v2 against v1, one stage against another),
not what a client sees; benchmarks/rest_floor.py and cpu_profile.py measure that, with TorchServe.

  .venv/bin/python benchmarks/front_cost.py [--floats 64 784] [--requests 20000] [--rounds 3]
Writes benchmarks/results/<date>-front-cost.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from kserve.model_repository import ModelRepository  # noqa: E402

from benchmarks.run import RESULTS, add_tag_option  # noqa: E402
from kserve_torchserve.config.model_config import ModelSpec  # noqa: E402
from kserve_torchserve.serving import codec, tensors, v2_json  # noqa: E402
from kserve_torchserve.serving.metrics import CountRequests  # noqa: E402
from kserve_torchserve.serving.model import TorchServeModel  # noqa: E402
from kserve_torchserve.serving.rest import TorchServeDataPlane  # noqa: E402
from kserve_torchserve.serving.rest_fastpath import FastPath  # noqa: E402

Message = dict[str, Any]
# The v2 path's stages: (module, function), each timed around its call.
STAGES = ((v2_json, "loads"), (v2_json, "common_request"), (codec, "v2_rows"), (tensors, "to_array"),
          (codec, "v2_response"), (v2_json, "render"))


class FixedAnswer:
    """The hop to TorchServe, answered at once with one row's answer per row (TorchServeClient's interface)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def fits(self, size: int) -> bool:
        return True

    async def send_v1(self, verb: str, model: str, version: str | None, body: bytes,
                      timeout: float, batcher: Any = None) -> list[tuple[bytes, bool]]:
        return [(self.answer, True)]

    async def send_rows(self, verb: str, model: str, version: str | None, rows: Sequence[Mapping[str, bytes]],
                        timeout: float, batcher: Any = None) -> list[bytes]:
        return [self.answer for _ in rows]


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("every request here is for the fast path")


def front(answer: bytes) -> CountRequests:
    """The server's HTTP stack for one ready model, "digits", on a FixedAnswer."""
    registry = ModelRepository()
    model = TorchServeModel(ModelSpec("digits", "1", "digits.mar", "h"), FixedAnswer(answer), 60, 100)  # type: ignore[arg-type]
    model.ready = True
    registry.update(model)
    return CountRequests(FastPath(_no_app, TorchServeDataPlane(model_registry=registry)))


async def call(app: CountRequests, path: str, body: bytes) -> None:
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    status: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"{path} answered {status}")


async def cpu_us(app: CountRequests, path: str, body: bytes, requests: int) -> float:
    """Process CPU microseconds per request over ``requests`` requests."""
    started = time.process_time()
    for _ in range(requests):
        await call(app, path, body)
    return (time.process_time() - started) / requests * 1e6


def timed_stages(totals: dict[str, int]) -> Callable[[], None]:
    """Wrap each v2 stage to add its nanoseconds to ``totals``; returns what undoes it."""
    originals = [(module, name, getattr(module, name)) for module, name in STAGES]
    for module, name, function in originals:
        def timed(*args: Any, _f: Callable[..., Any] = function, _n: str = name, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return _f(*args, **kwargs)
            finally:
                totals[_n] = totals.get(_n, 0) + time.perf_counter_ns() - started
        setattr(module, name, timed)

    def undo() -> None:
        for module, name, function in originals:
            setattr(module, name, function)
    return undo


async def measure(floats: int, requests: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(floats)
    instance = [rng.random() for _ in range(floats)]
    app = front(orjson.dumps([rng.random() for _ in range(10)]))
    bodies = {
        "v1": ("/v1/models/digits:predict", orjson.dumps({"instances": [instance]})),
        "v2": ("/v2/models/digits/infer", orjson.dumps(
            {"inputs": [{"name": "pixels", "shape": [1, floats], "datatype": "FP32", "data": instance}]})),
    }
    for path, body in bodies.values():  # the same warm-up for both
        await cpu_us(app, path, body, requests // 4)
    runs: dict[str, list[float]] = {"v1": [], "v2": []}
    for _ in range(rounds):
        for api, (path, body) in bodies.items():
            runs[api].append(await cpu_us(app, path, body, requests))
    totals: dict[str, int] = {}
    undo = timed_stages(totals)
    try:
        await cpu_us(app, *bodies["v2"], requests)
    finally:
        undo()
    # The least disturbed round: on shared cores noise only ever adds (timeit's advice); the median beside it.
    us = {api: round(min(values), 1) for api, values in runs.items()}
    return {"floats": floats, "requests_per_round": requests, "rounds": runs, "cpu_us_per_request": us,
            "median_us_per_request": {api: round(statistics.median(values), 1) for api, values in runs.items()},
            "v2_over_v1": round(us["v2"] / us["v1"], 2),
            "v2_stages_us": {name: round(ns / requests / 1000, 1) for name, ns in totals.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--floats", type=int, nargs="+", default=[64, 784])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    add_tag_option(parser)
    args = parser.parse_args()
    results = [asyncio.run(measure(n, args.requests, args.rounds)) for n in args.floats]
    print(f"{'floats':>7} {'v1 us':>7} {'v2 us':>7} {'v2/v1':>6}  (fastest round; median v1 / v2)  v2 stages (us, inclusive)")
    for r in results:
        stages = ", ".join(f"{k} {v}" for k, v in r["v2_stages_us"].items())
        print(f"{r['floats']:>7} {r['cpu_us_per_request']['v1']:>7} {r['cpu_us_per_request']['v2']:>7} "
              f"{r['v2_over_v1']:>6}  ({r['median_us_per_request']['v1']} / {r['median_us_per_request']['v2']})  {stages}")
    out = RESULTS / f"{datetime.date.today()}-front-cost{args.tag}.json"
    out.write_text(json.dumps({"benchmark": "front_cost", "python": sys.version.split()[0], "results": results},
                              indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
