from __future__ import annotations

from pathlib import Path


def test_threads_per_worker_shares_the_cores(tmp_path: Path) -> None:
    from kserve_torchserve.config.cpus import cgroup_cpu_limit, threads_per_worker

    assert threads_per_worker(2, cpus=8) == 4
    assert threads_per_worker(16, cpus=8) == 1
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
