"""Issue 14's table, for an earlier revision of this server and for the working tree, in one run.

The workload the issue measured: a TorchScript MLP (784 -> 64 -> 10, 784 floats per instance)
behind a handler that parses JSON (assets/mlp_handler.py), TorchServe batching on (batch 8,
5 ms), one worker, wrk at 16 connections, one instance per v1 request. Systems:
  ts-rest           TorchServe called directly (the working tree's server's TorchServe, a copy of the
                    model batched by TorchServe as configured: run.direct_model)
  ts-rest-default-spin
                    TorchServe called directly, as the revision before starts it: torch's OpenMP
                    threads with libgomp's default spin (what config/cpus.py changed)
  ours-before-v1    the server of git revision --before (default: main as this round began),
                    run from an exported copy of that revision with the same venv
  ours-v1           the working tree's server
  inprocess-kserve  a plain kserve.Model running the same TorchScript in-process
All get the same warm-up (Java's CPU per request printed by 2-s window, to show it
settled), then interleaved rounds (median reported), with CPU per request of every process.

  .venv/bin/python benchmarks/run.py --only before_after [--before REV] [--warmup 20]
"""

from __future__ import annotations

import functools
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks import load
from benchmarks.run import ROOT, Processes, direct_model, measure
from benchmarks.run import interleaved as rounds_interleaved  # this module's interleaved is the one-level form
from benchmarks.sweeps import BATCH_ENV, InProcessServer, warm_up
from tests.helpers import Server, build_mar

# main when this round began (the "today's code"): the last landed commit before it.
DEFAULT_BEFORE = "a7cbf7d"
FEATURES = 784
CONCURRENCY = 16


class _Pids(Processes):
    """CPU of a process that is not one of our servers (the in-process kserve.Model)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._java = None
        self.groups = groups


def _export(revision: str, into: Path) -> Path:
    """The package as it was at ``revision``, to put first on the server's PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "kserve_torchserve"],
                             check=True, capture_output=True).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _model(work: Path) -> Path:
    """The MLP as TorchScript, archived with its JSON-parsing handler into a model store."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)).eval()
    serialized = work / "mlp784.pt"
    torch.jit.script(net).save(str(serialized))  # type: ignore[no-untyped-call]
    store = work / "mlp784-store"
    build_mar(ROOT / "benchmarks" / "assets" / "mlp_handler.py", "mlp", store, serialized=serialized)
    return store


def instance() -> list[float]:
    """One 784-float instance, the same in every part that uses this workload."""
    import numpy as np

    return [round(float(v), 4) for v in np.random.default_rng(0).random(FEATURES)]


def start_pair(work: Path, store: Path, revision: str, prefix: str, servers: list[Server], model: str = "mlp",
               after_args: Sequence[str] = (), before_args: Sequence[str] = (), batch: int = 8) -> None:
    """The working tree's server and ``revision``'s, both on ``store`` with batching on (``batch`` 1: off),
    appended to ``servers`` as they start (so the caller's ``finally`` stops whatever did start);
    ``*_args``: flags for each."""
    before_code = _export(revision, work / f"{prefix}-before-code")
    for label, extra, args in (("after", {}, after_args), ("before", {"PYTHONPATH": str(before_code)}, before_args)):
        (work / f"{prefix}-{label}").mkdir()
        env = {**BATCH_ENV, "TS_BATCH_SIZE": str(batch), **extra}
        servers.append(Server(store, work / f"{prefix}-{label}", model_name=model, env=env, args=args))


Systems = dict[str, tuple[Callable[[int, float], dict[str, Any]], Processes]]


def warm_each(systems: Systems, seconds: float, concurrency: int) -> dict[str, list[float]]:
    """sweeps.warm_up for each system with its own processes: Java's CPU per request by 2-s window."""
    settling: dict[str, list[float]] = {}
    for name, (run, procs) in systems.items():
        settling.update(warm_up({name: run}, procs, seconds, concurrency))
    return settling


def interleaved(systems: Systems, repeats: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """run.interleaved at one concurrency, each system measured with its own processes' CPU: per
    system the median round by req/s, with every round's req/s beside it."""
    def point(name: str, level: int) -> dict[str, Any]:
        run, procs = systems[name]
        return measure(functools.partial(run, level, seconds), procs)

    results = rounds_interleaved([concurrency], repeats, list(systems), point)
    return {name: by_level[concurrency] for name, by_level in results.items()}


def before_after(work: Path, seconds: float, repeats: int, warmup_s: float,
                 revision: str = DEFAULT_BEFORE) -> dict[str, Any]:
    store = _model(work)
    v1 = json.dumps({"instances": [instance()]}).encode()
    servers: list[Server] = []
    inprocess: InProcessServer | None = None
    try:
        start_pair(work, store, revision, "ba", servers)
        inprocess = InProcessServer("W1", work / "mlp784.pt")
        for server in servers:
            server.wait_ready(timeout=300)
        after, before = servers
        props, key = after.torchserve()
        ts_url = f"{props['inference_address']}/predictions/{direct_model(after, 'mlp')}"  # batched as configured
        ts_body = json.dumps(instance()).encode()
        # The revision before set only OMP_NUM_THREADS: its TorchServe runs with libgomp's default spin
        # (config/cpus.py), as a TorchServe started by hand would.
        stock, stock_key = before.torchserve()
        stock_url = f"{stock['inference_address']}/predictions/mlp"
        systems: Systems = {
            "ts-rest": (lambda c, s: load.wrk(ts_url, ts_body, "application/json",
                                              {"Authorization": f"Bearer {key}"}, c, s), Processes(after)),
            "ts-rest-default-spin": (lambda c, s: load.wrk(stock_url, ts_body, "application/json",
                                                           {"Authorization": f"Bearer {stock_key}"}, c, s),
                                     Processes(before)),
            f"ours-before-v1 ({revision})": (lambda c, s: load.wrk(f"{before.url}/v1/models/mlp:predict", v1,
                                                                   "application/json", {}, c, s), Processes(before)),
            "ours-v1": (lambda c, s: load.wrk(f"{after.url}/v1/models/mlp:predict", v1, "application/json", {}, c, s),
                        Processes(after)),
            "inprocess-kserve": (lambda c, s: load.wrk(f"http://127.0.0.1:{inprocess.port}/v1/models/model:predict",
                                                       v1, "application/json", {}, c, s),
                                 _Pids({"ours": [inprocess.proc.pid], "java": [], "workers": []})),
        }
        settling = warm_each(systems, warmup_s, CONCURRENCY)
        points = interleaved(systems, repeats, CONCURRENCY, seconds)
        ts = points["ts-rest"]["rps"]
        for name, point in points.items():
            point["vs_ts_rest"] = round(point["rps"] / ts, 3)
        print("  before/after c=16: " + ", ".join(f"{n} {p['rps']:.0f}/s ({p['vs_ts_rest']}x)" for n, p in points.items()),
              flush=True)
        return {"revision_before": revision, "workload": "TorchScript MLP 784-64-10, JSON-parsing handler",
                "env": BATCH_ENV, "concurrency": CONCURRENCY, "warmup_java_ms_per_request": settling,
                "systems": points}
    finally:
        if inprocess is not None:
            inprocess.stop()
        for server in servers:
            server.stop()
