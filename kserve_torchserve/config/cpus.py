"""How many CPUs this container may use, and how many torch threads each worker gets.

TorchServe starts every worker with PyTorch's default of one intra-op thread per
core, so W workers on C cores run W x C threads and thrash. We give each worker
max(1, C // W) threads through OMP_NUM_THREADS (which torch reads at start-up),
unless the user set OMP_NUM_THREADS. C honours the process's CPU affinity and the
cgroup CPU quota a Kubernetes CPU limit sets.

And how long an idle torch thread spins before it sleeps. torch's OpenMP (GNU libgomp,
bundled in the wheel) spins 300,000 rounds by default when a parallel region ends, waiting
for the next. A forward pass's next op comes within microseconds, but the next batch
comes milliseconds later, and all that time the spinning thread holds a core that Java,
the other workers and our process need. Measured on the 2-core VM (issue 14, batch 8,
c=16): the digits MLP's worker spent 0.77-1.25 ms of CPU per request with the default spin
and 0.30-0.43 ms with GOMP_SPINCOUNT=10000, and TorchServe's throughput rose from about
2,100 to 2,600-3,100 req/s (ours behind it from about 1,050 to 2,100); resnet18 kept its
throughput (20-24 req/s either way), while fully passive threads (OMP_WAIT_POLICY=PASSIVE)
cost it 20%, and one thread per worker 45%. A user's GOMP_SPINCOUNT or OMP_WAIT_POLICY wins.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 cpu.max, else v1 cfs files), or None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


# About tens of microseconds of spinning: enough to bridge the ops of one forward pass, not the gap
# between batches.
SPIN_COUNT = 10000
_SPIN_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def torch_thread_env(threads: int, env: Mapping[str, str]) -> dict[str, str]:
    """What a worker's environment needs for ``threads`` torch threads that do not hog the cores,
    leaving out what ``env`` (the user's) already decides."""
    out: dict[str, str] = {}
    if "OMP_NUM_THREADS" not in env:
        out["OMP_NUM_THREADS"] = str(threads)  # read by torch at start-up
    if not any(name in env for name in _SPIN_SETTINGS):
        out["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return out


def describe_threads(threads: int, env: Mapping[str, str]) -> str:
    """What a worker gets (``torch_thread_env`` over ``env``), for the start-up summary."""
    worker = {**env, **torch_thread_env(threads, env)}
    spin = worker.get("GOMP_SPINCOUNT") or f"OMP_WAIT_POLICY={worker['OMP_WAIT_POLICY']}"
    return f"{worker['OMP_NUM_THREADS']} (OpenMP spin count {spin})"


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    return max(1, (cpus or available_cpus()) // max(1, workers))
