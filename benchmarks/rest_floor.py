"""How close can any Python v1 REST front get to TorchServe's own REST API? Measured, side by side.

W1 (the digits MLP, batch 8 / 5 ms: serving overhead dominates), one TorchServe, five systems
loaded by the same wrk closed loop, interleaved rounds:
  ts-rest          TorchServe's /predictions, called directly (with its token);
  ours-v1-rest     our server's v1 :predict;
  uvicorn-forward  uvicorn with a bare ASGI app that forwards the body as ours does
                   (benchmarks/rest_fronts.py): uvicorn's request cycle plus the hop;
  python-forward   the leanest Python front: httptools on uvloop, the same forward;
  python-echo      the same HTTP server answering a fixed body, no upstream.
For each: req/s, p50, and CPU ms per request of the front, Java and the workers. Where all of
them share the cores, req/s follows the sum: this splits our process's CPU per request into
the floor any Python front pays (echo; forward), what uvicorn adds, and what our stack adds.

With --spy, py-spy then samples each Python front under the same load (c=16) and its samples are
split by layer (benchmarks/cpu_profile.py by_layer): the event loop's native work, socket writes,
and each source file, as a share and as ms of that front's CPU per request.

  .venv/bin/python benchmarks/rest_floor.py [--levels 16 64] [--rounds 3] [--seconds 5] [--warmup 8] [--spy]
Writes benchmarks/results/<date>-rest-floor.json and prints a table.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import load  # noqa: E402
from benchmarks.cpu_profile import by_layer, spy  # noqa: E402
from benchmarks.grpc_floor import floor_parser, floor_report, wait_port, write_report  # noqa: E402
from benchmarks.run import Processes, direct_model, interleaved, measure, terminate, w1_workload  # noqa: E402
from benchmarks.sweeps import BATCH_ENV  # noqa: E402
from kserve_torchserve.backend.ports import free_ports  # noqa: E402
from tests.helpers import Server  # noqa: E402

FRONTS = ("uvicorn-forward", "python-forward", "python-echo")


def run(levels: list[int], rounds: int, seconds: float, warmup: float, sample: bool) -> dict[str, Any]:
    w1 = w1_workload()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = Server(w1["storage"], work, model_name=w1["model"],
                        env=BATCH_ENV)  # with the queue the sweeps use: warm-ups leave jobs behind at c=64
        fronts: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            server.wait_ready(timeout=300)
            props, key = server.torchserve()
            # TorchServe called directly, and the fronts that forward each request to it, reach the copy
            # of the model TorchServe batches as configured (run.direct_model); ours batches in front.
            direct = direct_model(server, w1["model"])
            for name, port in zip(FRONTS, free_ports(len(FRONTS))):
                proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "rest_fronts.py"),
                                         name.removeprefix("python-"), str(port), str(server.work_dir), direct])
                fronts[name] = (proc, port)
                wait_port(port, proc)
            procs = Processes(server)
            v1 = json.dumps({"instances": [w1["instance"]]}).encode()
            targets: dict[str, tuple[str, bytes, dict[str, str]]] = {
                "ts-rest": (f"{props['inference_address']}/predictions/{direct}", w1["ts_body"],
                            {"Authorization": f"Bearer {key}"}),
                "ours-v1-rest": (f"{server.url}/v1/models/{w1['model']}:predict", v1, {}),
                **{name: (f"http://127.0.0.1:{port}/v1/models/{direct}:predict", v1, {})
                   for name, (_, port) in fronts.items()},
            }
            front_pid = {"ours-v1-rest": server.proc.pid, **{name: p.pid for name, (p, _) in fronts.items()}}

            def call(system: str, level: int, secs: float) -> Callable[[], dict[str, Any]]:
                url, body, headers = targets[system]
                return lambda: load.wrk(url, body, "application/json", headers, level, secs)

            def load_at_16(system: str, secs: float) -> dict[str, Any]:
                return call(system, 16, secs)()

            for system in targets:  # the same warm-up for every system: Java's JIT, before anything counts
                call(system, 16, warmup)()

            def point(system: str, level: int) -> dict[str, Any]:
                # TorchServe called directly has no front (our idle server is not in its path).
                procs.groups["ours"] = [front_pid[system]] if system in front_pid else []
                return measure(call(system, level, seconds), procs)

            results = interleaved(levels, rounds, list(targets), point)
            layers: dict[str, list[tuple[str, float]]] = {}
            for system, pid in front_pid.items() if sample else ():
                if system == "python-echo":
                    continue  # no upstream: nothing to compare
                stacks = work / f"{system}.stacks.txt"
                spy(pid, seconds, stacks, functools.partial(load_at_16, system))
                layers[system] = by_layer(stacks)
            return {**floor_report("ts-rest", results, seconds, rounds), "warmup_s": warmup,
                    "py_spy_layers_c16": layers}
        finally:
            for proc, _ in fronts.values():
                terminate(proc)
            server.stop()


def print_table(report: dict[str, Any]) -> None:
    print(f"{'system':<16} {'c':>3} {'req/s':>7} {'ratio':>6} {'p50 ms':>7}  cpu ms/req: front / java / workers")
    for system, points in report["systems"].items():
        for level, p in points.items():
            cpu = p["cpu_ms_per_request"]
            ratio = report["ratios_vs_ts_rest"].get(system, {}).get(level, 1.0)
            print(f"{system:<16} {level:>3} {p['rps']:7.0f} {ratio:6.2f} {p['p50_ms']:7.2f}  "
                  f"{cpu['ours']:.3f} / {cpu['java']:.3f} / {cpu['workers']:.3f}")
    for system, layers in report["py_spy_layers_c16"].items():
        front_ms = report["systems"][system][16]["cpu_ms_per_request"]["ours"] if 16 in report["systems"][system] else 0
        print(f"py-spy, {system} at c=16, by layer (share; ms of its {front_ms:.3f} ms per request):")
        for layer, percent in layers[:14]:
            print(f"  {percent:5.1f}%  {front_ms * percent / 100:.3f}  {layer}")


def main() -> int:
    parser = floor_parser(__doc__, [16, 64])
    parser.add_argument("--spy", action="store_true", help="also split each Python front's CPU by layer (py-spy)")
    args = parser.parse_args()
    report = run(args.levels, args.rounds, args.seconds, args.warmup, args.spy)
    write_report(report, "rest-floor" + args.tag, print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
