"""How close can any Python v2 gRPC front get to TorchServe's own gRPC? Measured, side by side.

W1 (the digits MLP, where serving overhead dominates), one TorchServe, four gRPC
systems called by the same grpc.aio closed loop, interleaved rounds:
  ts-grpc          TorchServe's Java gRPC Predictions, called directly;
  ours-v2-grpc     kserve's gRPC server -> DataPlane -> our model -> TorchServe REST;
  python-forward   the leanest Python front (benchmarks/grpc_fronts.py forward): grpc.aio,
                   one proto in, one REST call to the same TorchServe, one proto out;
  python-echo      grpc.aio answering a fixed response, no upstream (the bare gRPC cost);
  python-echo-sync the same on grpc's synchronous server (thread pool): a way out of grpc.aio?
For each: req/s, p50, and CPU ms per request of the front, Java, the workers and the
load generator. On a machine where all of them share the cores, req/s follows the sum.

  .venv/bin/python benchmarks/grpc_floor.py [--levels 8 32] [--rounds 3] [--seconds 5] [--warmup 8]
Writes benchmarks/results/<date>-grpc-floor[-<server arg>].json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import load  # noqa: E402
from benchmarks.run import (RESULTS, Processes, add_tag_option, build_workloads, cpu_model, interleaved,  # noqa: E402
                            measure, terminate)
from kserve_torchserve.backend.ports import free_ports  # noqa: E402
from tests.helpers import Server  # noqa: E402


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads: the load generator's event loop and gRPC's
    return usage.ru_utime + usage.ru_stime


def _measure(call: Callable[[], dict[str, Any]], procs: Processes) -> dict[str, Any]:
    """run.measure, plus the load generator's own CPU per request and the sum of all."""
    own = _own_cpu()

    def window_starts() -> None:  # the same window as measure's
        nonlocal own
        own = _own_cpu()

    with load.on_measured_window(window_starts):
        result = measure(call, procs)
    cpu = result["cpu_ms_per_request"]
    cpu["front"] = cpu.pop("ours")
    cpu["load generator"] = round(1000 * (_own_cpu() - own) / max(result["requests"], 1), 3)
    cpu["total"] = round(sum(cpu.values()), 3)
    return result


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"front exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"front not listening on {port} after {timeout}s")


def floor_report(base: str, results: dict[str, dict[int, Any]], seconds: float, rounds: int) -> dict[str, Any]:
    """A floor benchmark's report: its points, and each system's req/s over ``base``'s, per level."""
    ratios = {system: {level: round(point["rps"] / results[base][level]["rps"], 3) for level, point in points.items()}
              for system, points in results.items() if system != base}
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "cpu_model": cpu_model(), "seconds_per_point": seconds, "rounds": rounds, "systems": results,
            f"ratios_vs_{base.replace('-', '_')}": ratios}


def run(levels: list[int], rounds: int, seconds: float, warmup: float, server_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        w1 = build_workloads(work)["W1"]
        (work / "server").mkdir()
        server = Server(w1["storage"], work / "server", model_name=w1["model"], args=server_args)
        fronts: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            server.wait_ready(timeout=300)
            props, key = server.torchserve()
            for kind, port in zip(("echo", "forward", "echo-sync"), free_ports(3)):
                proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "grpc_fronts.py"), kind, str(port),
                                         str(server.work_dir)])
                fronts[f"python-{kind}"] = (proc, port)
                wait_port(port, proc)
            procs = Processes(server)
            front_pid = {"ours-v2-grpc": server.proc.pid, **{name: p.pid for name, (p, _) in fronts.items()}}
            targets = {"ours-v2-grpc": server.grpc_port, **{name: port for name, (_, port) in fronts.items()}}
            ts_target = f"127.0.0.1:{props['grpc_inference_port']}"

            def call(system: str, level: int, secs: float) -> dict[str, Any]:
                if system == "ts-grpc":
                    return asyncio.run(load.grpc_ts(ts_target, w1["model"], w1["ts_row"], key, level, secs))
                return asyncio.run(load.grpc_ours(f"127.0.0.1:{targets[system]}", w1["model"], w1, level, secs))

            systems = ["ts-grpc", "ours-v2-grpc", "python-forward", "python-echo", "python-echo-sync"]
            for system in systems:  # Java's JIT compiles both its gRPC and REST paths before anything is measured
                call(system, 8, warmup)
            def point(system: str, level: int) -> dict[str, Any]:
                # TorchServe called directly has no front (our idle server is not in its path).
                procs.groups["ours"] = [front_pid[system]] if system in front_pid else []
                return _measure(lambda: call(system, level, seconds), procs)

            return floor_report("ts-grpc", interleaved(levels, rounds, systems, point), seconds, rounds)
        finally:
            for proc, _ in fronts.values():
                terminate(proc)
            server.stop()


def print_table(report: dict[str, Any]) -> None:
    print(f"{'system':<16} {'c':>3} {'req/s':>7} {'ratio':>6} {'p50 ms':>7}  "
          "cpu ms/req: front / java / workers / load gen = total")
    for system, points in report["systems"].items():
        for level, p in points.items():
            cpu = p["cpu_ms_per_request"]
            ratio = report["ratios_vs_ts_grpc"].get(system, {}).get(level, 1.0)
            print(f"{system:<16} {level:>3} {p['rps']:7.0f} {ratio:6.2f} {p['p50_ms']:7.2f}  "
                  f"{cpu['front']:.2f} / {cpu['java']:.2f} / {cpu['workers']:.2f} / {cpu['load generator']:.2f}"
                  f" = {cpu['total']:.2f}")


def floor_parser(doc: str | None, levels: list[int]) -> argparse.ArgumentParser:
    """The options every floor benchmark takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=levels)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of load per system before measuring")
    add_tag_option(parser)
    return parser


def write_report(report: dict[str, Any], stem: str, show: Callable[[dict[str, Any]], None]) -> None:
    """``results/<date>-<stem>.json``, then the table ``show`` prints."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{datetime.date.today().isoformat()}-{stem}.json"
    path.write_text(json.dumps(report, indent=2))
    show(report)
    print(f"wrote {path}")


def main() -> int:
    parser = floor_parser(__doc__, [8, 32])
    parser.add_argument("--server-arg", action="append", default=[],
                        help="an extra flag for our server, e.g. --server-arg=--disable_fast_path")
    args = parser.parse_args()
    report = run(args.levels, args.rounds, args.seconds, args.warmup, args.server_arg)
    report["server_args"] = args.server_arg
    variant = "".join(f"-{arg.strip('-')}" for arg in args.server_arg)  # an A/B run keeps its own file
    write_report(report, f"grpc-floor{variant}{args.tag}", print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
