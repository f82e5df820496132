"""How many CPUs this container may use, and how many torch threads each worker gets.

TorchServe starts every worker with PyTorch's default of one intra-op thread per
core, so W workers on C cores run W x C threads and thrash. We give each worker
max(1, C // W) threads through OMP_NUM_THREADS (which torch reads at start-up),
unless the user set OMP_NUM_THREADS. C honours the process's CPU affinity and the
cgroup CPU quota a Kubernetes CPU limit sets.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


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


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    return max(1, (cpus or available_cpus()) // max(1, workers))
