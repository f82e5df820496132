"""Throughput and latency, side by side in one run: ours vs TorchServe called directly vs in-process.

Systems, on the same model and payload, against one server of ours (whose TorchServe,
with the same config.properties, is also called directly, on a copy of the model that
TorchServe batches itself as the server was configured: direct_model):
  ours-v1-rest, ours-v2-rest (wrk), ours-v2-grpc (grpc.aio closed loop)
  ts-rest (wrk, /predictions/{m}), ts-grpc (grpc.aio, Predictions)
  in-process: the same model and pre/post-processing in a plain loop (the limit)
Workloads: W1 the digits MLP (serving overhead dominates), W2 resnet18 on a 224x224
PNG with TorchServe's image_classifier (compute dominates). Closed-loop sweep over
concurrency with a warm-up; W1 also with batch size 8 at concurrency 32.
Reports req/s, p50/p99 latency, ours/TS-direct and ours/limit ratios, and CPU time
per request of each process (ours, java, workers).

Second part (benchmarks/sweeps.py): batching on (batch 8, 5 ms) at c=16 and c=64 for W1 and
W2 with a plain in-process kserve.Model as a fourth system; CPU per request as one instance
grows (64 / 784 / 150,528 floats, a 200 KB base64 PNG); one 32-instance request against 32
single-instance requests, for both request designs; issue 14's workload for an earlier revision
against the working tree (before_after.py); what TorchServe's Java and workers spend per request
and why (java_cost.py). Every system gets the same warm-up (--warmup seconds) and Java's CPU per
request during it is printed, to show it settled.

  benchmarks/setup.sh && .venv/bin/python benchmarks/run.py [--quick]
      [--only sweep,batching,sizes,many,before_after,java_cost]
Writes benchmarks/results/<date>.json, prints a table, and plots <date>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import functools
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import load  # noqa: E402
from benchmarks.report import plot, print_part_two, print_table  # noqa: E402
from tests.helpers import Server, digits_example  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's name, recorded with every result: the same VM name has served hosts about twice as
    fast as each other (TorchServe direct, W1 batch 8: 2,409 req/s one day, 4,878 the next), so absolute
    figures compare only within a run, or between runs on the same processor."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


ALL_PARTS = ("sweep", "batching", "sizes", "many", "before_after", "java_cost")  # --only's default, in run order


def results_stem(day: datetime.date, parts: set[str], tag: str = "") -> str:
    """The results files' name: the date, the parts when not all ran, and ``tag`` when given."""
    stem = day.isoformat() + ("" if parts >= set(ALL_PARTS) else "-" + "-".join(sorted(parts)))
    return stem + tag_suffix(tag)


def tag_suffix(tag: str) -> str:
    """``-TAG`` for a results file's name, "" for no tag: letters, digits, ``.``, ``_`` and ``-`` only, so it
    names a file in results/, never a path (ValueError otherwise: argparse's refusal, as a ``type``)."""
    if tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", tag):
        raise ValueError("--tag takes letters, digits, '.', '_' and '-', starting with a letter or digit")
    return f"-{tag}" if tag else ""


def add_tag_option(parser: argparse.ArgumentParser) -> None:
    """``--tag NAME``, given to every script that writes results: a second run the same day keeps the first's
    file. ``args.tag`` is the suffix (``tag_suffix``); a tag that could name a path is refused before measuring."""
    parser.add_argument("--tag", type=tag_suffix, default="",
                        help="a suffix for the results files, so that a rerun the same day keeps the first's")


def cpu_times(stat: Path) -> tuple[float, float]:
    """(user, system) CPU seconds from a /proc stat file: a process's, or one thread's (/proc/<pid>/task/<tid>/stat)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(Path(f"/proc/{pid}/stat")))


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of the processes still there (one may end between listing and reading)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


class Processes:
    """CPU time of our server, TorchServe's java and its workers."""

    _java: int | None  # None: no TorchServe to re-read workers from (before_after._Pids)

    def __init__(self, server: Server) -> None:
        self._java = server.java_pid()
        self.groups = {"ours": [server.proc.pid], "java": [self._java], "workers": _children(self._java)}

    def snapshot(self) -> dict[str, float]:
        # TorchServe's workers as they are now: direct_model may have registered a copy of the model (its
        # worker is counted from its start, which is before any window: it registers before warm-up).
        if self._java is not None:
            self.groups["workers"] = _children(self._java)
        return {name: cpu_of(pids) for name, pids in self.groups.items()}


def terminate(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM to a process we started, then SIGKILL if it is still there after ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(call: Callable[[], dict[str, Any]], procs: Processes,
            settle: Callable[[], None] | None = None) -> dict[str, Any]:
    """``call``'s result, with each process's CPU per request over the load's measured window: from the
    end of its own warm-up (load.on_measured_window) to its end. (Before 2026-11-27, late evening, the
    snapshots also took in the 1-s warm-up, overstating CPU per request by 1/N for N-second windows.)

    ``settle`` (a barrier such as ``settled``) runs between the load's warm-up and its window, and
    after the window: wrk's warm-up ends with every connection's request still queued in TorchServe,
    which keeps a job whose client went away, so without it a window starts behind that backlog (at
    W2's ~40 ms per image, 64 jobs are 2.6 s of a 5-s window), and the next point behind this one's.
    A caller timing its own window around this one (grpc_floor, cpu_profile) would count the trailing
    barrier: those pass none."""
    before = procs.snapshot()

    def window_starts() -> None:
        nonlocal before
        if settle is not None:
            settle()
        before = procs.snapshot()

    with load.on_measured_window(window_starts):
        result = call()
    after = procs.snapshot()
    if settle is not None:
        settle()
    requests = max(result["requests"], 1)
    result["cpu_ms_per_request"] = {k: round(1000 * (after[k] - before[k]) / requests, 3) for k in before}
    return result


def interleaved(levels: list[int], rounds: int, systems: list[str],
                point: Callable[[str, int], dict[str, Any]], label: str = "") -> dict[str, dict[int, Any]]:
    """``point(system, level)`` for every level, in ``rounds`` rounds of every system in turn (a slow
    moment of this shared VM then hits every system alike); per system and level, the median round by
    req/s, with every round's req/s. Every benchmark's rounds go through here.

    Each round starts one system later than the one before, so no system always follows the same
    one: what a load leaves behind moves the next system's figure (a gRPC closed loop cost the REST
    system after it 5%, benchmarks/README.md), and with a fixed order it was always the same system's."""
    results: dict[str, dict[int, Any]] = {s: {} for s in systems}
    for level in levels:
        points: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        for index in range(rounds):
            shift = index % len(systems)
            for system in systems[shift:] + systems[:shift]:
                points[system].append(point(system, level))
        for system, runs in points.items():
            median = sorted(runs, key=lambda p: p["rps"])[len(runs) // 2]
            median["rounds_rps"] = [round(p["rps"], 1) for p in runs]
            results[system][level] = median
        print(f"  {label + ' ' if label else ''}c={level}: " + ", ".join(
            f"{s} {results[s][level]['rps']:.0f}/s"
            + (f" ({results[s][level]['errors']} errors)" if results[s][level].get("errors") else "")
            for s in systems), flush=True)
    return results


def direct_model(server: Server, model: str) -> str:
    """The model to call for "TorchServe called directly": TorchServe batching as the server was configured.

    Our server makes a model's batches itself by default (kserve_torchserve/backend/batcher.py) and
    registers it in TorchServe with max batch delay 0, since each of its requests is a batch already:
    called directly, that registration would be TorchServe with a batching nobody configured. So a
    second copy of the model goes into the same TorchServe (the same JVM, warmed alike, and the same
    processes counted), with the batch size, delay and workers the server was given, and TorchServe's
    own batcher; its name is returned. With batching made by TorchServe (--torchserve_batching, or
    batch size 1), the model itself is returned."""
    import requests

    described = requests.get(f"{server.url}/models/{model}", timeout=30)
    if described.status_code == 404:
        return model  # a revision from before batching in front (and this endpoint): TorchServe batches as configured
    ours = described.json()[0]
    props, key = server.torchserve("management")
    auth = {"Authorization": f"Bearer {key}"}
    theirs = requests.get(f"{props['management_address']}/models/{model}", headers=auth, timeout=30).json()[0]
    if theirs["maxBatchDelay"] == ours["maxBatchDelay"]:
        return model
    name = f"{model}-direct"
    if requests.get(f"{props['management_address']}/models/{name}", headers=auth, timeout=30).ok:
        return name  # registered by an earlier call
    answer = requests.post(f"{props['management_address']}/models", headers=auth, timeout=300, params={
        "url": theirs["modelUrl"], "model_name": name, "batch_size": ours["batchSize"],
        "max_batch_delay": ours["maxBatchDelay"], "initial_workers": ours["minWorkers"], "synchronous": "true"})
    if not answer.ok:
        raise RuntimeError(f"TorchServe did not register {name}: {answer.status_code} {answer.text[:300]}")
    return name


def settled(server: Server, model: str, body: bytes, ctype: str, v1_body: bytes | None = None) -> Callable[[], None]:
    """A barrier between loads: one request through each queue a load can leave behind, answered only once
    every request queued before it is done. A closed loop that stops leaves its last requests queued (in
    our batcher, backend/batcher.py, then in TorchServe, which does not drop a job whose client went
    away), and a compute-bound model (W2) takes seconds to work them off: without the barrier the next
    load meets a full queue (503s) or a backlog, and is charged for it. ``v1_body``: our batcher's
    queue too (a v1 predict through the server, which queues behind it); then TorchServe's, for our
    registration and for the copy called directly (direct_model)."""
    import requests

    props, key = server.torchserve()
    models = sorted({model, direct_model(server, model)})  # ours in TorchServe, and the copy called directly
    queues = [(f"{server.url}/v1/models/{model}:predict", v1_body, {"Content-Type": "application/json"})] if v1_body else []
    queues += [(f"{props['inference_address']}/predictions/{name}", body,
                {"Authorization": f"Bearer {key}", "Content-Type": ctype}) for name in models]

    def wait() -> None:
        for url, data, headers in queues:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # a 503 (queue full) says nothing about the backlog: again
                answer = requests.post(url, data=data, timeout=300, headers=headers)
                if answer.ok:
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{url} did not work off its queue in 300 s (last answer {answer.status_code})")

    return wait


def idle(pid: int, timeout_s: float = 300) -> None:
    """Wait until process ``pid`` stops using CPU (under 5% of a core over 0.5 s): a server that keeps
    computing requests whose client went away would otherwise take the cores from the next system."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.025:
            return
    raise RuntimeError(f"process {pid} kept computing for {timeout_s:.0f} s")


def in_process_limit(workload: str, build: Path, payload: Any, seconds: float) -> dict[str, Any]:
    """The same model and processing in a loop, one thread per worker's share: no server at all."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    if workload == "W1":
        model = torch.jit.load(str(build / "model.pt"))  # type: ignore[no-untyped-call]
        row = json.dumps(payload).encode()

        def once() -> None:
            with torch.inference_mode():
                torch.softmax(model(torch.tensor([json.loads(row)], dtype=torch.float32)), dim=1).tolist()
    else:
        from PIL import Image
        from torchvision import transforms

        model = torch.jit.load(str(build / "model.pt"))  # type: ignore[no-untyped-call]
        steps = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        image = base64.b64decode(payload["data"])

        def once() -> None:
            tensor = steps(Image.open(io.BytesIO(image)).convert("RGB")).unsqueeze(0)
            with torch.inference_mode():
                torch.topk(torch.softmax(model(tensor), dim=1), 5)

    for _ in range(20):
        once()
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        once()
        latencies.append(time.perf_counter() - start)
    return load.summary(latencies, seconds)


def w1_workload() -> dict[str, Any]:
    """W1: the digits example's MLP, one of its instances (64 floats) as each request's payload."""
    digits = digits_example()
    instance = json.loads((digits / "request.json").read_text())["instances"][0]
    return {"storage": digits / "model-store", "build": digits, "model": "digits", "instance": instance,
            "ts_body": json.dumps(instance).encode(),
            "v2": {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": instance}]},
            "ts_row": {"data": json.dumps(instance).encode()}}


def build_workloads(work: Path) -> dict[str, dict[str, Any]]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("image_example", ROOT / "examples" / "image_classifier" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    image_dir = module.build(work / "image")
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(buffer, "PNG")
    png_b64 = base64.b64encode(buffer.getvalue()).decode()
    return {
        "W1": w1_workload(),
        "W2": {"storage": image_dir, "build": image_dir, "model": "model", "instance": {"data": png_b64},
               "ts_body": base64.b64decode(png_b64),
               "v2": {"inputs": [{"name": "data", "shape": [1], "datatype": "BYTES", "data": [png_b64]}]},
               "ts_row": {"data": base64.b64decode(png_b64)}},
    }


def _wrk_at(target: tuple[str, bytes, str, dict[str, str]], seconds: float, level: int) -> dict[str, Any]:
    url, body, ctype, headers = target
    return load.wrk(url, body, ctype, headers, level, seconds)


def bench_server(name: str, workload: dict[str, Any], env: dict[str, str], levels: list[int], seconds: float,
                 work: Path, repeats: int = 1) -> dict[str, Any]:
    tmp = work / name
    tmp.mkdir()
    model = workload["model"]
    server = Server(workload["storage"], tmp, model_name=model, env=env)
    try:
        started = time.perf_counter()
        server.wait_ready(timeout=300)
        startup = time.perf_counter() - started
        props, key = server.torchserve()
        procs = Processes(server)
        ts_rest = props["inference_address"]
        ts_grpc = f"127.0.0.1:{props['grpc_inference_port']}"
        direct = direct_model(server, model)  # TorchServe batching as configured
        v1 = json.dumps({"instances": [workload["instance"]]}).encode()
        v2 = json.dumps(workload["v2"]).encode()
        rest_targets = {
            "ours-v1-rest": (f"{server.url}/v1/models/{model}:predict", v1, "application/json", {}),
            "ours-v2-rest": (f"{server.url}/v2/models/{model}/infer", v2, "application/json", {}),
            "ts-rest": (f"{ts_rest}/predictions/{direct}", workload["ts_body"],
                        "application/json" if name.startswith("W1") else "application/octet-stream",
                        {"Authorization": f"Bearer {key}"}),
        }
        results: dict[str, Any] = {"startup_to_ready_s": round(startup, 2), "systems": {}}
        # Java compiles its hot paths during the first seconds of traffic; without this
        # the first system measured (ours, c=1) would pay for TorchServe's JIT warm-up.
        for url, body, ctype, headers in rest_targets.values():
            load.wrk(url, body, ctype, headers, 4, 3)
        asyncio.run(load.grpc_ours(f"127.0.0.1:{server.grpc_port}", model, workload, 4, 2))
        asyncio.run(load.grpc_ts(ts_grpc, direct, workload["ts_row"], key, 4, 2))
        calls: dict[str, Callable[[int], dict[str, Any]]] = {
            system: functools.partial(_wrk_at, target, seconds) for system, target in rest_targets.items()
        }
        calls["ours-v2-grpc"] = lambda level: asyncio.run(
            load.grpc_ours(f"127.0.0.1:{server.grpc_port}", model, workload, level, seconds))
        calls["ts-grpc"] = lambda level: asyncio.run(
            load.grpc_ts(ts_grpc, direct, workload["ts_row"], key, level, seconds))
        # Each point starts on TorchServe's empty queue, not behind its own warm-up's or the previous
        # system's leftovers (measure); before this, ours over gRPC measured W2 behind ts-rest's.
        queue = settled(server, model, workload["ts_body"], rest_targets["ts-rest"][2], v1)
        results["systems"] = interleaved(levels, repeats, list(calls),
                                         lambda system, level: measure(lambda: calls[system](level), procs, queue),
                                         name)
        return results
    finally:
        server.stop()


def ratios(run: dict[str, Any], limit: dict[str, Any]) -> dict[str, Any]:
    systems = run["systems"]
    best = {s: max(points.values(), key=lambda p: p["rps"]) for s, points in systems.items()}
    out = {
        "best_rps": {s: round(p["rps"], 1) for s, p in best.items()},
        "ours_v1_rest_vs_ts_rest": round(best["ours-v1-rest"]["rps"] / best["ts-rest"]["rps"], 3),
        "ours_v2_rest_vs_ts_rest": round(best["ours-v2-rest"]["rps"] / best["ts-rest"]["rps"], 3),
        "ours_v2_grpc_vs_ts_grpc": round(best["ours-v2-grpc"]["rps"] / best["ts-grpc"]["rps"], 3),
        "ours_v1_rest_vs_limit": round(best["ours-v1-rest"]["rps"] / limit["rps"], 3),
    }
    if 1 in systems["ours-v1-rest"]:
        out["added_p50_ms_at_c1"] = {
            "v1-rest vs ts-rest": round(systems["ours-v1-rest"][1]["p50_ms"] - systems["ts-rest"][1]["p50_ms"], 3),
            "v2-grpc vs ts-grpc": round(systems["ours-v2-grpc"][1]["p50_ms"] - systems["ts-grpc"][1]["p50_ms"], 3),
        }
    return out


def main() -> int:
    # SIGTERM (kill, a CI timeout) must unwind through every `finally` so the servers it
    # started stop too; Python's default would leave them running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer levels and shorter points (a smoke run)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--plot-only", type=Path, help="redraw the plot of a results JSON and exit")
    parser.add_argument("--only", default=",".join(ALL_PARTS),
                        help="comma-separated parts: sweep (the concurrency sweep), batching, sizes, many, "
                        "before_after (issue 14's workload: an earlier revision vs the working tree), "
                        "java_cost (what TorchServe's Java and workers spend per request, and why)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of warm-up per system (part two)")
    parser.add_argument("--tag", default="", help="a suffix for the results files, so that a second run on the "
                        "same day does not overwrite the first")
    parser.add_argument("--before", default=None,
                        help="git revision whose server the before_after part compares with the working tree's")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    try:  # named now, by the day the run starts: a bad tag is refused before an hour of measuring
        stamp = results_stem(datetime.date.today(), parts, args.tag)
    except ValueError as exc:
        parser.error(str(exc))
    if args.plot_only:
        plot(json.loads(args.plot_only.read_text()), args.plot_only.with_suffix(".png"))
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: run benchmarks/setup.sh first")
    levels = [1, 8, 32] if args.quick else [1, 2, 4, 8, 16, 32, 64]
    seconds = 2.0 if args.quick else args.seconds
    report: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "cpus": os.cpu_count(), "cpu_model": cpu_model(),
                              "seconds_per_point": seconds, "runs": {}, "limits": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        workloads = build_workloads(work)
        # (name, workload, TorchServe env, concurrency levels, rounds per point). Single
        # points move by 10-20% between rounds on this VM, more than the differences being
        # measured, so each point is the median of three interleaved rounds.
        repeats = 1 if args.quick else 3
        plan = [("W1", "W1", {}, levels, repeats),
                ("W1-batch8", "W1", {"TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "5"},
                 [32] if args.quick else [8, 32, 64], repeats),
                ("W2", "W2", {"TS_BATCH_SIZE": "4", "TS_MAX_BATCH_DELAY": "10"},
                 [1, 4, 16] if args.quick else [1, 4, 8, 16], repeats)]
        if "sweep" in parts:
            for name, workload, env, run_levels, rounds in plan:
                print(f"{name}: {workload} with {env or 'defaults'}", flush=True)
                report["runs"][name] = bench_server(name, workloads[workload], env, run_levels, seconds, work, rounds)
            for workload in ("W1", "W2"):
                report["limits"][workload] = in_process_limit(workload, workloads[workload]["build"],
                                                              workloads[workload]["instance"], seconds)
        from benchmarks import sweeps

        warmup = 4.0 if args.quick else args.warmup
        if "batching" in parts:
            print("batching on, four systems", flush=True)
            report["batching"] = sweeps.batching(workloads, work, seconds, repeats, warmup)
        if "sizes" in parts:
            print("instance sizes", flush=True)
            report["sizes"] = sweeps.sizes(work, seconds, repeats, warmup)
        if "many" in parts:
            print("32 instances in one request", flush=True)
            report["many"] = sweeps.many(workloads, work, seconds, repeats, warmup)
        if "before_after" in parts:
            from benchmarks import before_after

            print("issue 14's workload, an earlier revision against the working tree", flush=True)
            report["before_after"] = before_after.before_after(
                work, seconds, repeats, warmup, args.before or before_after.DEFAULT_BEFORE)
        if "java_cost" in parts:
            from benchmarks import before_after, java_cost

            print("where Java's and the workers' CPU per request comes from", flush=True)
            report["java_cost"] = java_cost.java_cost(
                work, seconds, repeats, warmup, args.before or before_after.DEFAULT_BEFORE)
    if "sweep" in parts:
        for name, run in report["runs"].items():
            run["ratios"] = ratios(run, report["limits"][name.split("-")[0]])
        w1, w1b = report["runs"]["W1"]["systems"], report["runs"]["W1-batch8"]["systems"]
        report["batching_gain_w1_c32"] = {s: round(w1b[s][32]["rps"] / w1[s][32]["rps"], 3)
                                          for s in w1 if 32 in w1b.get(s, {})}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    if "sweep" in parts:
        plot(report, RESULTS / f"{stamp}.png")
        print_table(report)
    print_part_two(report)
    print(f"wrote {RESULTS / f'{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
