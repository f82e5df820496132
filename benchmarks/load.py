"""Load generators for benchmarks/run.py: wrk for REST, a grpc.aio closed loop for gRPC.

Each warms up for 1 s before the window it measures; ``on_measured_window`` lets a caller
take its CPU snapshots at the start of that window, so that CPU per request counts the
requests the result counts and no others (run.measure).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc

_window_hooks: list[Callable[[], None]] = []


@contextlib.contextmanager
def on_measured_window(hook: Callable[[], None]) -> Iterator[None]:
    """Within the block, ``hook`` is called when a load's measured window starts (its warm-up done)."""
    _window_hooks.append(hook)
    try:
        yield
    finally:
        _window_hooks.remove(hook)


def _window_starts() -> None:
    # Innermost first: a measure() nested in another user's block runs its barrier (run.settled)
    # before the outer user's snapshot too, so neither counts the barrier's work.
    for hook in reversed(_window_hooks):
        hook()


def summary(latencies: list[float], seconds: float, errors: int = 0) -> dict[str, Any]:
    ordered = sorted(latencies) or [0.0]
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / seconds,
        "seconds": round(seconds, 3),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


_LUA = """
wrk.method = "POST"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "{ctype}"
{headers}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _parse_duration(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value / {"us": 1e6, "ms": 1e3, "s": 1.0}[unit]


def wrk(url: str, body: bytes, ctype: str, headers: dict[str, str], connections: int, seconds: float) -> dict[str, Any]:
    """A closed loop of ``connections`` keep-alive connections for ``seconds`` (after a 1 s warm-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        script = Path(tmp) / "post.lua"
        extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        script.write_text(_LUA.format(body=body_file, ctype=ctype, headers=extra))
        threads = str(min(2, connections))
        base = ["wrk", "-t", threads, "-c", str(connections), "-s", str(script), "--timeout", "30s", url]
        subprocess.run(base[:5] + ["-d", "1s"] + base[5:], capture_output=True, check=True)  # warm-up
        duration = max(1, int(seconds))  # wrk takes whole seconds
        _window_starts()
        out = subprocess.run(base[:5] + ["-d", f"{duration}s"] + base[5:], capture_output=True, text=True,
                             check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk said: {out}")
    requests, status_errors, socket_errors = (int(match.group(i)) for i in (1, 2, 3))
    # Only answered, 2xx requests count: a fast 503 is not throughput (wrk counts it as a request).
    good = max(0, requests - status_errors - socket_errors)
    return {"requests": good, "errors": status_errors + socket_errors, "rps": good / duration,
            "p50_ms": float(match.group(4)) / 1000, "p99_ms": float(match.group(5)) / 1000}


async def _closed_loop(call: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    async def worker(end: float, record: bool) -> None:
        nonlocal errors
        while time.perf_counter() < end:
            start = time.perf_counter()
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if record:
                latencies.append(time.perf_counter() - start)

    warm = time.perf_counter() + 1.0
    await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
    _window_starts()
    started = time.perf_counter()
    end = started + seconds
    await asyncio.gather(*(worker(end, True) for _ in range(concurrency)))
    # Every call started before ``end`` is counted, and the last ones finish up to one latency after
    # it: the rate is over the time they took. (Before 2026-11-28 it was over ``seconds``, which at
    # W2's seconds of latency with c=64 overstated gRPC's req/s by half; at W1's milliseconds, by <1%.)
    return summary(latencies, time.perf_counter() - started, errors)


async def grpc_ours(target: str, model: str, workload: dict[str, Any], concurrency: int,
                    seconds: float) -> dict[str, Any]:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    spec = workload["v2"]["inputs"][0]
    if spec["datatype"] == "BYTES":
        contents = pb.InferTensorContents(bytes_contents=[base64.b64decode(d) for d in spec["data"]])
    else:
        contents = pb.InferTensorContents(fp32_contents=spec["data"])
    request = pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name=spec["name"], shape=spec["shape"], datatype=spec["datatype"], contents=contents)])
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return await _closed_loop(lambda: stub.ModelInfer(request, timeout=60), concurrency, seconds)


async def grpc_ts(target: str, model: str, row: dict[str, bytes], key: str, concurrency: int,
                  seconds: float) -> dict[str, Any]:
    from kserve_torchserve.backend import grpc_stubs

    stubs = grpc_stubs.load()
    request = stubs.inference_pb2.PredictionsRequest(model_name=model, input=row)
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = stubs.inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        return await _closed_loop(lambda: stub.Predictions(request, metadata=metadata, timeout=60),
                                  concurrency, seconds)



