"""Our v2 path (REST and gRPC; --apis adds v1 REST) for an earlier revision and the working tree, in one run, under load.

front_cost.py times our Python work per request in-process; this says whether a change to the
v2 path shows where it counts: throughput and CPU per request with TorchServe on the same
cores. W1 (the digits MLP, 64 floats), batching on (batch 8 / 5 ms), two servers of ours each
with its own TorchServe: the working tree's and git revision --before's (an exported copy of
the package, first on its PYTHONPATH, the same venv). Systems, all at --concurrency:
  ts-before-rest / -grpc        the revision's TorchServe called directly (REST, gRPC)
  ours-before-v2-rest / -grpc   the revision's server
  ts-after-rest / -grpc         the working tree's TorchServe called directly
  ours-after-v2-rest / -grpc    the working tree's server
(--apis v1-rest v2-rest v2-grpc picks which of our routes; each is compared with TorchServe's REST or
gRPC, as its transport is.)
The same warm-up for each (so both JVMs get the same; Java's CPU per request by 2-s window
printed, to show it settled), then interleaved rounds, the median by req/s reported with each
process's CPU per request; each "ours" as a ratio to its own TorchServe called directly.

  .venv/bin/python benchmarks/v2_before_after.py [--before REV] [--rounds 3] [--seconds 6] [--warmup 10]
      [--apis v2-rest v2-grpc] [--after-args="--torchserve_batching"] [--before-args=...] [--batch 8] [--tag NAME]
Writes benchmarks/results/<date>-v2-before-after[-NAME].json and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.before_after import Systems, interleaved, start_pair, warm_each  # noqa: E402
from benchmarks.grpc_floor import write_report  # noqa: E402
from benchmarks.run import Processes, add_tag_option, w1_workload  # noqa: E402
from benchmarks.sweeps import systems_for  # noqa: E402
from tests.helpers import Server  # noqa: E402

DEFAULT_BEFORE = "e50eab9"  # main as the 2026-11-28 session began


APIS = ("v1-rest", "v2-rest", "v2-grpc")


def run(revision: str, rounds: int, seconds: float, warmup_s: float, concurrency: int,
        apis: tuple[str, ...] = ("v2-rest", "v2-grpc"), after_args: tuple[str, ...] = (),
        before_args: tuple[str, ...] = (), batch: int = 8) -> dict[str, Any]:
    workload = w1_workload()
    model = workload["model"]
    servers: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            start_pair(Path(tmp), workload["storage"], revision, "v2", servers, model=model, after_args=after_args,
                       before_args=before_args, batch=batch)
            for server in servers:
                server.wait_ready(timeout=300)
            after, before = servers
            systems: Systems = {}
            # Each server's TorchServe called directly too: the same warm-up for both JVMs, and each
            # "ours" is compared with its own TorchServe.
            for label, server in (("before", before), ("after", after)):
                direct = Processes(server)
                direct.groups["ours"] = []  # TorchServe called directly: our idle server is not in its path
                calls = systems_for(server, workload, None)
                for transport in sorted({api.rsplit("-", 1)[1] for api in apis}):
                    systems[f"ts-{label}-{transport}"] = (calls[f"ts-{transport}"], direct)
                for api in apis:
                    systems[f"ours-{label}-{api}"] = (calls[f"ours-{api}"], Processes(server))
            settling = warm_each(systems, warmup_s, concurrency)
            points = interleaved(systems, rounds, concurrency, seconds)
        finally:
            for server in servers:
                server.stop()
    for name, point in points.items():  # ours-<label>-<api> against ts-<label>-<its transport>
        label, transport = name.split("-")[1], name.rsplit("-", 1)[1]
        point["vs_ts"] = round(point["rps"] / points[f"ts-{label}-{transport}"]["rps"], 3)
    return {"revision_before": revision, "after_args": list(after_args), "before_args": list(before_args),
            "workload": "W1 digits MLP, 64 floats", "apis": list(apis),
            "concurrency": concurrency,
            "env": f"batch {batch} / 5 ms" if batch > 1 else "batch 1", "rounds": rounds, "seconds": seconds,
            "warmup_java_ms_per_request": settling, "systems": points}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=DEFAULT_BEFORE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="TS_BATCH_SIZE of both servers (1: batching off)")
    parser.add_argument("--apis", nargs="+", choices=APIS, default=["v2-rest", "v2-grpc"])
    parser.add_argument("--after-args", default="", help="flags for the working tree's server, e.g. --torchserve_batching")
    parser.add_argument("--before-args", default="", help="flags for the revision's server")
    add_tag_option(parser)
    args = parser.parse_args()
    report = run(args.before, args.rounds, args.seconds, args.warmup, args.concurrency, tuple(args.apis),
                 tuple(args.after_args.split()), tuple(args.before_args.split()), args.batch)
    write_report(report, "v2-before-after" + args.tag, show)
    return 0


def show(report: dict[str, Any]) -> None:
    print(f"\nc={report['concurrency']}, median of {report['rounds']} interleaved rounds; "
          "CPU ms per request ours / Java / workers")
    for name, point in report["systems"].items():
        cpu = point["cpu_ms_per_request"]
        print(f"  {name:22s} {point['rps']:8.1f} req/s  {point['vs_ts']:.2f}x  "
              f"{cpu['ours']:.3f} / {cpu['java']:.3f} / {cpu['workers']:.3f}   rounds {point['rounds_rps']}")

if __name__ == "__main__":
    sys.exit(main())
