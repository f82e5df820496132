"""Printing and plotting run.py's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [k for k in report["runs"]]
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), squeeze=False)
    for ax, name in zip(axes[0], runs):
        for system, points in report["runs"][name]["systems"].items():
            levels = sorted(points, key=int)  # ints in a fresh run, strings when read back from JSON
            ax.plot([int(k) for k in levels], [points[k]["rps"] for k in levels], marker="o", label=system)
        limit = report["limits"][name.split("-")[0]]["rps"]
        ax.axhline(limit, color="grey", linestyle="--", label="in-process limit")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")  # W1's in-process limit is ~20x the servers' throughput
        ax.set_xlabel("concurrency (closed loop)")
        ax.set_ylabel("requests / s")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_part_two(report: dict[str, Any]) -> None:
    for workload, run in report.get("batching", {}).items():
        print(f"\n{workload}, batch 8 / 5 ms")
        for level in (16, 64):
            ts_rest = run["systems"]["ts-rest"][level]["rps"]
            ts_grpc = run["systems"]["ts-grpc"][level]["rps"]
            for system, points in run["systems"].items():
                p = points[level]
                base = ts_grpc if "grpc" in system else ts_rest
                cpu = "/".join(f"{v:.2f}" for v in p["cpu_ms_per_request"].values())
                ratio = f"{p['rps'] / base:5.2f}x" if base else "    -"
                print(f"  c={level:<3} {system:<17} {p['rps']:8.1f} req/s  {ratio}  cpu ms/req {cpu}")
    for label, point in report.get("sizes", {}).items():
        print(f"size {label:<22} body {point['v1_body_bytes']:>9} B  ours cpu ms/req "
              f"{point['ours-v1-rest']['cpu_ms_per_request']}  ts-direct {point['ts-rest']['cpu_ms_per_request']}")
    for design, result in report.get("many", {}).items():
        print(f"32 instances, {design}: x{result['instances_per_s_ratio']} (c=2), x{result.get('instances_per_s_ratio_c8')} (c=8) instances/s; " + "; ".join(
            f"{k}: {v['instances_per_s']}/s cpu/instance {v['cpu_ms_per_instance']}"
            for k, v in result.items() if isinstance(v, dict)))
    before_after = report.get("before_after")
    if before_after:
        print(f"\n{before_after['workload']}, batch 8 / 5 ms, c={before_after['concurrency']}")
        for system, p in before_after["systems"].items():
            cpu = " / ".join(f"{v:.2f}" for v in p["cpu_ms_per_request"].values())
            print(f"  {system:<28} {p['rps']:8.1f} req/s  {p['vs_ts_rest']:5.2f}x  cpu ms/req ours/java/workers {cpu}")


def print_table(report: dict[str, Any]) -> None:
    for name, run in report["runs"].items():
        print(f"\n{name} (start-up to ready {run['startup_to_ready_s']} s)")
        print(f"{'system':<14} {'c':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  cpu ms/req (ours/java/workers)")
        for system, points in run["systems"].items():
            for level in sorted(points, key=int):
                p = points[level]
                cpu = p["cpu_ms_per_request"]
                print(f"{system:<14} {level:>4} {p['rps']:9.1f} {p['p50_ms']:8.2f} {p['p99_ms']:8.2f}  "
                      f"{cpu['ours']:.2f}/{cpu['java']:.2f}/{cpu['workers']:.2f}")
        print("ratios:", json.dumps(run["ratios"]))
    for workload, limit in report["limits"].items():
        print(f"in-process limit {workload}: {limit['rps']:.1f} req/s, p50 {limit['p50_ms']:.3f} ms")
    print("batching gain W1 c=32 (batch 8 / batch 1):", json.dumps(report["batching_gain_w1_c32"]))
