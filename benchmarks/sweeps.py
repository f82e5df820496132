"""The measurements of run.py's second part: batching on, payload size, many instances per request.

- ``batching``: W1 and W2 with TorchServe batching on (batch 8, 5 ms) at c=16 and c=64:
  ours (v1 REST, v2 REST, v2 gRPC), TorchServe called directly (REST, gRPC), and a plain
  in-process ``kserve.Model`` (inprocess_kserve.py), every system after the same warm-up.
- ``sizes``: CPU per request of every process as one instance grows: 64, 784 and 150,528
  floats (3x224x224 as JSON) and a 200 KB base64 PNG, against a handler that answers with
  the input's size (assets/size_handler.py), so what grows is the front's work alone.
- ``many``: one v1 request with 32 instances against 32 single-instance requests, for both
  designs (one TorchServe request per client request, our envelope splitting rows in the
  worker; and ``--request_per_instance``).
JIT-fair warm-up: every system is driven for the same ``warmup_s`` before any point, and Java's
CPU per request is recorded in 2-s windows during it, to show it had settled.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks import load
from benchmarks.run import ROOT, Processes, direct_model, idle, interleaved, measure, settled, terminate
from kserve_torchserve.backend.ports import free_ports
from tests.helpers import Server, build_mar

# TorchServe's job queue (100 by default) is raised so that closed loops never overflow it: a
# wrk run leaves its last requests queued when it stops (TorchServe keeps a job whose client
# went away), and at W2's ~25 req/s, 64 of those plus the next run's 64 would get 503s for
# seconds. Overload is the reliability suite's subject, not the benchmark's.
BATCH_ENV = {"TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "5", "TS_JOB_QUEUE_SIZE": "1000"}


class InProcessServer:
    """benchmarks/inprocess_kserve.py in a child process, for as long as the ``with`` lasts."""

    def __init__(self, workload: str, model: Path) -> None:
        (self.port,) = free_ports(1)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "inprocess_kserve.py"),
                                      "--workload", workload, "--model", str(model), "--http_port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import requests

        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/v1/models/model", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError("the in-process kserve.Model server did not start")
            time.sleep(0.3)

    def stop(self) -> None:
        terminate(self.proc, 30)


def systems_for(server: Server, workload: dict[str, Any], inprocess: InProcessServer | None) -> dict[str, Callable[[int, float], dict[str, Any]]]:
    props, key = server.torchserve()
    model = workload["model"]
    direct = direct_model(server, model)  # TorchServe batching as configured (run.direct_model)
    v1 = json.dumps({"instances": [workload["instance"]]}).encode()
    v2 = json.dumps(workload["v2"]).encode()
    ts_ctype = "application/json" if model == "digits" else "application/octet-stream"
    auth = {"Authorization": f"Bearer {key}"}
    grpc_ts = f"127.0.0.1:{props['grpc_inference_port']}"
    systems: dict[str, Callable[[int, float], dict[str, Any]]] = {
        "ours-v1-rest": lambda c, s: load.wrk(f"{server.url}/v1/models/{model}:predict", v1, "application/json", {}, c, s),
        "ours-v2-rest": lambda c, s: load.wrk(f"{server.url}/v2/models/{model}/infer", v2, "application/json", {}, c, s),
        "ours-v2-grpc": lambda c, s: asyncio.run(load.grpc_ours(f"127.0.0.1:{server.grpc_port}", model, workload, c, s)),
        "ts-rest": lambda c, s: load.wrk(f"{props['inference_address']}/predictions/{direct}", workload["ts_body"],
                                         ts_ctype, auth, c, s),
        "ts-grpc": lambda c, s: asyncio.run(load.grpc_ts(grpc_ts, direct, workload["ts_row"], key, c, s)),
    }
    if inprocess is not None:
        url = f"http://127.0.0.1:{inprocess.port}/v1/models/model:predict"
        systems["inprocess-kserve"] = lambda c, s: load.wrk(url, v1, "application/json", {}, c, s)
    return systems


def warm_up(systems: dict[str, Callable[[int, float], dict[str, Any]]], procs: Processes, seconds: float,
            concurrency: int, barrier: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """The same warm-up for every system; Java's CPU per request, 2-s windows, shows it settled."""
    settling: dict[str, list[float]] = {}
    for name, run in systems.items():
        windows = []
        for _ in range(max(1, int(seconds // 2))):
            point = measure(lambda: run(concurrency, 2), procs, barrier)
            windows.append(point["cpu_ms_per_request"]["java"])
        settling[name] = windows
        print(f"    warm-up {name}: java ms/req by 2-s window {windows}", flush=True)
    return settling


def _points(systems: dict[str, Callable[[int, float], dict[str, Any]]], procs: Processes, levels: list[int],
            seconds: float, repeats: int, label: str,
            barrier: Callable[[], None] | None = None) -> dict[str, dict[int, Any]]:
    """run.interleaved over ``systems``, each point on an empty queue when ``barrier`` is given."""
    return interleaved(levels, repeats, list(systems),
                       lambda name, level: measure(lambda: systems[name](level, seconds), procs, barrier), label)


def batching(workloads: dict[str, dict[str, Any]], work: Path, seconds: float, repeats: int,
             warmup_s: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in ("W1", "W2"):
        workload = workloads[name]
        (work / f"batching-{name}").mkdir()
        server = Server(workload["storage"], work / f"batching-{name}", model_name=workload["model"], env=BATCH_ENV)
        inprocess = InProcessServer(name, workload["build"] / "model.pt")
        try:
            server.wait_ready(timeout=300)
            procs = Processes(server)
            procs.groups["inprocess"] = [inprocess.proc.pid]
            systems = systems_for(server, workload, inprocess)
            ctype = "application/json" if workload["model"] == "digits" else "application/octet-stream"
            queue = settled(server, workload["model"], workload["ts_body"], ctype,
                            json.dumps({"instances": [workload["instance"]]}).encode())

            def barrier() -> None:
                queue()
                idle(inprocess.proc.pid)  # the in-process server, too, works off what wrk left it (W2: seconds)

            settling = warm_up(systems, procs, warmup_s, 16, barrier)
            report[name] = {"warmup_java_ms_per_request": settling,
                            "systems": _points(systems, procs, [16, 64], seconds, repeats, f"{name}-batch8",
                                               barrier)}
        finally:
            inprocess.stop()
            server.stop()
    return report


def _size_payloads() -> dict[str, tuple[Any, bytes, str]]:
    """name -> (v1 instance, TorchServe-direct body, its content type)."""
    import numpy as np
    from PIL import Image

    payloads: dict[str, tuple[Any, bytes, str]] = {}
    rng = np.random.default_rng(0)
    for floats in (64, 784, 150528):
        instance = [round(float(v), 3) for v in rng.random(floats)]
        payloads[f"{floats} floats"] = (instance, json.dumps(instance).encode(), "application/json")
    image = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)  # noise: ~150 KB PNG, ~200 KB base64
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    png = buffer.getvalue()
    payloads[f"{len(base64.b64encode(png)) // 1000} KB base64 PNG"] = (
        {"data": base64.b64encode(png).decode()}, png, "application/octet-stream")
    return payloads


def sizes(work: Path, seconds: float, repeats: int, warmup_s: float) -> dict[str, Any]:
    store = work / "size-store"
    (work / "sizes").mkdir()
    build_mar(ROOT / "benchmarks" / "assets" / "size_handler.py", "size", store)
    server = Server(store, work / "sizes", model_name="size", env={"TS_MAX_REQUEST_SIZE": "33554432",
                                                                  "TS_MAX_RESPONSE_SIZE": "33554432"})
    report: dict[str, Any] = {}
    try:
        server.wait_ready(timeout=300)
        procs = Processes(server)
        props, key = server.torchserve()
        for label, (instance, ts_body, ctype) in _size_payloads().items():
            v1 = json.dumps({"instances": [instance]}).encode()
            systems: dict[str, Callable[[int, float], dict[str, Any]]] = {
                "ours-v1-rest": functools.partial(load.wrk, f"{server.url}/v1/models/size:predict", v1,
                                                  "application/json", {}),
                "ts-rest": functools.partial(load.wrk, f"{props['inference_address']}/predictions/size", ts_body,
                                             ctype, {"Authorization": f"Bearer {key}"}),
            }
            warm_up(systems, procs, warmup_s, 4)
            points = _points(systems, procs, [4], seconds, repeats, label)
            report[label] = {"v1_body_bytes": len(v1), **{name: p[4] for name, p in points.items()}}
    finally:
        server.stop()
    return report


def many(workloads: dict[str, dict[str, Any]], work: Path, seconds: float, repeats: int,
         warmup_s: float) -> dict[str, Any]:
    """32 instances in one v1 request vs 32 single-instance requests, per design: instances/s, CPU per instance."""
    workload = workloads["W1"]
    rows = [workload["instance"]] * 32
    one = json.dumps({"instances": [workload["instance"]]}).encode()
    thirty_two = json.dumps({"instances": rows}).encode()
    report: dict[str, Any] = {}
    for design, args in (("batched in front (default)", []),
                         ("per client request (envelope), batched by TorchServe", ["--torchserve_batching"]),
                         ("per instance", ["--request_per_instance"])):
        (work / f"many-{len(report)}").mkdir()
        server = Server(workload["storage"], work / f"many-{len(report)}", model_name="digits", env=BATCH_ENV,
                        args=args)
        try:
            server.wait_ready(timeout=300)
            procs = Processes(server)
            url = f"{server.url}/v1/models/digits:predict"
            systems: dict[str, Callable[[int, float], dict[str, Any]]] = {
                "32 single-instance requests (c=32)": lambda c, s: load.wrk(url, one, "application/json", {}, 32, s),
                "one 32-instance request (c=2)": lambda c, s: load.wrk(url, thirty_two, "application/json", {}, 2, s),
                # Two requests in flight never fill a batch of 8: every batch waits out the 5-ms delay. Eight do.
                "one 32-instance request (c=8)": lambda c, s: load.wrk(url, thirty_two, "application/json", {}, 8, s),
            }
            warm_up(systems, procs, warmup_s, 0)
            points = _points(systems, procs, [0], seconds, repeats, design)
            result = {}
            for name, by_level in points.items():
                point, per = by_level[0], (32 if name.startswith("one") else 1)
                result[name] = {"instances_per_s": round(point["rps"] * per, 1),
                                "cpu_ms_per_instance": {k: round(v / per, 4) for k, v in point["cpu_ms_per_request"].items()},
                                "rounds_rps": point["rounds_rps"]}
            single = result["32 single-instance requests (c=32)"]["instances_per_s"]
            result["instances_per_s_ratio"] = round(result["one 32-instance request (c=2)"]["instances_per_s"] / single, 2)
            result["instances_per_s_ratio_c8"] = round(result["one 32-instance request (c=8)"]["instances_per_s"] / single, 2)
            report[design] = result
        finally:
            server.stop()
    return report
