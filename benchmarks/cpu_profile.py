"""Where our process's CPU goes under load, for one protocol: the figures behind benchmarks/README.md's
"where the time goes" paragraphs, reproducible.

W1 (the digits MLP) behind one server of ours, batch 8 / 5 ms unless --batch 1; load from wrk
(v1, v2 REST) or a grpc.aio closed loop (v2 gRPC), after a warm-up. Prints, per measured round:
req/s; CPU ms per request of our process (user / system), Java and the workers; our process's
CPU per request by thread (the event loop's, gRPC's poller and event-engine threads, ...). With
--spy, py-spy then samples our process (Python frames, no native ones: it does not stop the
process) under the same load and the busiest functions are printed, by own time and with what
they call; the raw stacks are kept next to the JSON. ``--api ts`` loads the same TorchServe
directly (wrk, its REST API with the token), and ``--spy-on worker`` samples TorchServe's worker
instead of our process: the two side by side show what the worker spends behind us and without us.

  benchmarks/setup.sh && .venv/bin/python benchmarks/cpu_profile.py --api v2 [--concurrency 16]
      [--batch 8] [--seconds 8] [--rounds 2] [--warmup 10] [--spy [--spy-on worker]] [--top 25]
Writes benchmarks/results/<date>-profile-<api>[-worker].json (and ...stacks.txt beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import load  # noqa: E402
from benchmarks.run import (RESULTS, Processes, add_tag_option, cpu_seconds, cpu_times, direct_model,  # noqa: E402
                            measure, terminate, w1_workload)
from benchmarks.sweeps import BATCH_ENV  # noqa: E402
from tests.helpers import Server  # noqa: E402

def threads(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, keyed ``name:tid``."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat")
        try:
            name, spent = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0], sum(cpu_times(stat))
        except OSError:  # the thread ended between listdir and read
            continue
        out[f"{name}:{tid}"] = spent
    return out


def load_for(server: Server, workload: dict[str, Any], api: str, concurrency: int) -> Callable[[float], dict[str, Any]]:
    """A call that puts ``seconds`` of load on ``server`` over ``api``, the workload's instance in each request."""
    model = workload["model"]
    if api == "grpc":
        target = f"127.0.0.1:{server.grpc_port}"
        return lambda seconds: asyncio.run(load.grpc_ours(target, model, workload, concurrency, seconds))
    if api == "v2":
        url, body = f"{server.url}/v2/models/{model}/infer", json.dumps(workload["v2"]).encode()
    elif api == "ts":  # the same TorchServe, called directly as run.py's ts-rest system does
        props, key = server.torchserve()
        url = f"{props['inference_address']}/predictions/{direct_model(server, model)}"  # batched as configured
        return lambda seconds: load.wrk(url, workload["ts_body"], "application/json",
                                        {"Authorization": f"Bearer {key}"}, concurrency, seconds)
    else:
        url, body = f"{server.url}/v1/models/{model}:predict", json.dumps({"instances": [workload["instance"]]}).encode()
    return lambda seconds: load.wrk(url, body, "application/json", {}, concurrency, seconds)


def measured_round(server: Server, procs: Processes, run: Callable[[float], dict[str, Any]],
                   seconds: float) -> dict[str, Any]:
    pid = server.proc.pid
    stat = Path(f"/proc/{pid}/stat")
    (user0, system0), threads0 = cpu_times(stat), threads(pid)

    def window_starts() -> None:  # measure's window: after the load's own warm-up
        nonlocal user0, system0, threads0
        (user0, system0), threads0 = cpu_times(stat), threads(pid)

    with load.on_measured_window(window_starts):
        point = measure(lambda: run(seconds), procs)
    (user1, system1), threads1 = cpu_times(stat), threads(pid)
    requests: int = max(point["requests"], 1)

    def per_request(delta: float) -> float:
        return round(1000 * delta / requests, 3)

    point["ours_user_system_ms"] = [per_request(user1 - user0), per_request(system1 - system0)]
    spent = {name: per_request(total - threads0.get(name, 0.0)) for name, total in threads1.items()}
    point["ours_by_thread_ms"] = {name: ms for name, ms in sorted(spent.items(), key=lambda kv: -kv[1]) if ms > 0}
    return point


def spy(pid: int, seconds: float, output: Path, run: Callable[[float], dict[str, Any]]) -> None:
    """py-spy's raw stacks of ``pid`` (Python frames, sampled without stopping it) while ``run`` loads it."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: run benchmarks/setup.sh")
    output.unlink(missing_ok=True)  # never report an earlier run's stacks
    with tempfile.TemporaryFile() as errors:
        recorder = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                                     "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(output)],
                                    stdout=subprocess.DEVNULL, stderr=errors)
        try:
            run(seconds + 2)  # a little longer than the recording, so that it never samples an idle server
            recorder.wait(timeout=60)
        finally:
            terminate(recorder)  # still running: the load failed, or py-spy hangs
        if recorder.returncode != 0 or not output.exists():
            errors.seek(0)
            said = errors.read().decode("utf-8", "replace").strip()[-500:]
            raise SystemExit(f"py-spy could not sample our process (exit {recorder.returncode}): {said}")


# Where a sample sits in a socket write's system call: our two functions whose own time is their one
# write (to TorchServe; the answer to the client), and the two lines of uvicorn 0.3x's send() that write.
SOCKET_WRITES = {("_Connection.send", "kserve_torchserve/backend/http_pool.py", None),
                 ("LingeringTransport._flush", "kserve_torchserve/serving/deadlines.py", None),
                 ("RequestResponseCycle.send", "uvicorn/protocols/http/httptools_impl.py", 524),
                 ("RequestResponseCycle.send", "uvicorn/protocols/http/httptools_impl.py", 551)}


def _samples(stacks: Path) -> Iterator[tuple[list[str], int]]:
    """py-spy's raw format: each distinct stack (frames, outermost first) and how many samples it had."""
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def by_layer(stacks: Path) -> list[tuple[str, float]]:
    """Shares of the samples by where the innermost Python frame is: the event loop's own native work
    (uvloop: epoll, socket reads, callbacks), a socket write, or else the source file running."""
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, samples in _samples(stacks):
        total += samples
        match = re.match(r"(.*) \((.*):(\d+)\)$", frames[-1])
        function, path, number = match.groups() if match else ("?", "?", "0")
        if function == "Runner.run" or (function == "run" and path.endswith("uvloop/__init__.py")):
            layer = "event loop (native)"
        elif {(function, path, None), (function, path, int(number))} & SOCKET_WRITES:
            layer = "socket writes"
        else:
            layer = path
        layers[layer] += samples
    return [(layer, round(100 * n / max(total, 1), 1)) for layer, n in layers.most_common()]


def busiest(stacks: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    """Shares of the samples: by the line running (own), and by every function on the stack (inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, samples in _samples(stacks):
        total += samples
        own[frames[-1]] += samples  # by line: where in the function
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames}:  # by function, whatever the line
            inclusive[function] += samples

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / max(total, 1), 1)) for frame, n in counter.most_common(top)]

    return {"own": share(own), "inclusive": share(inclusive)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", choices=("v1", "v2", "grpc", "ts"), default="v1",
                        help="v1 or v2 REST, or v2 gRPC; ts: TorchServe's REST called directly, bypassing us "
                             "(not --protocol: kserve, imported here, parses that one)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="TS_BATCH_SIZE (1: no batching)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring (Java's JIT)")
    parser.add_argument("--spy", action="store_true", help="also sample a process with py-spy")
    parser.add_argument("--spy-on", choices=("ours", "worker"), default="ours",
                        help="the process --spy samples: ours, or TorchServe's (first) worker")
    parser.add_argument("--top", type=int, default=25)
    add_tag_option(parser)
    args = parser.parse_args()

    env = {**BATCH_ENV, "TS_BATCH_SIZE": str(args.batch)} if args.batch > 1 else {}
    spied = "" if args.spy_on == "ours" else f"-{args.spy_on}"
    stem = f"{datetime.date.today().isoformat()}-profile-{args.api}{spied}{args.tag}"
    result: dict[str, Any] = {"api": args.api, "concurrency": args.concurrency, "batch": args.batch,
                              "spied": args.spy_on, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        workload = w1_workload()
        server = Server(workload["storage"], Path(tmp), model_name=workload["model"], env=env)
        try:
            server.wait_ready(300)
            procs = Processes(server)
            run = load_for(server, workload, args.api, args.concurrency)
            run(args.warmup)
            for index in range(args.rounds):
                point = measured_round(server, procs, run, args.seconds)
                result["rounds"].append(point)
                cpu = point["cpu_ms_per_request"]
                print(f"round {index + 1}: {point['rps']:.0f} req/s; CPU ms per request: ours {cpu['ours']} "
                      f"(user {point['ours_user_system_ms'][0]}, system {point['ours_user_system_ms'][1]}), "
                      f"java {cpu['java']}, workers {cpu['workers']}")
                print("  ours by thread:", ", ".join(f"{n} {ms}" for n, ms in point["ours_by_thread_ms"].items()))
            if args.spy:
                RESULTS.mkdir(parents=True, exist_ok=True)
                stacks = RESULTS / f"{stem}.stacks.txt"
                # The worker this api loaded (TorchServe may run a second: run.direct_model's copy).
                target = server.proc.pid if args.spy_on == "ours" else max(procs.groups["workers"], key=cpu_seconds)
                spy(target, args.seconds, stacks, run)
                result["py_spy"] = busiest(stacks, args.top)
                for kind in ("own", "inclusive"):
                    print(f"py-spy, share of the samples of {args.spy_on} ({kind}):")
                    for frame, percent in result["py_spy"][kind]:
                        print(f"  {percent:5.1f}%  {frame}")
        finally:
            server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS / f'{stem}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
