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


def test_torch_threads_get_a_short_spin_unless_the_user_chose() -> None:
    from kserve_torchserve.config.cpus import SPIN_COUNT, torch_thread_env

    assert torch_thread_env(2, {}) == {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": str(SPIN_COUNT)}
    assert torch_thread_env(2, {"OMP_NUM_THREADS": "4"}) == {"GOMP_SPINCOUNT": str(SPIN_COUNT)}
    assert torch_thread_env(2, {"GOMP_SPINCOUNT": "300000"}) == {"OMP_NUM_THREADS": "2"}
    assert torch_thread_env(2, {"OMP_WAIT_POLICY": "PASSIVE"}) == {"OMP_NUM_THREADS": "2"}


def test_the_summary_says_what_a_worker_gets() -> None:
    from kserve_torchserve.config.cpus import describe_threads

    assert describe_threads(2, {}) == "2 (OpenMP spin count 10000)"
    assert describe_threads(2, {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}) == \
        "1 (OpenMP spin count OMP_WAIT_POLICY=PASSIVE)"


def test_a_torchserve_child_gets_the_thread_settings(tmp_path: Path) -> None:
    from kserve_torchserve.backend.process import Layout, child_env

    layout = Layout(tmp_path)
    env = child_env(layout, {"PATH": "/bin"}, torch_threads=2)
    assert (env["OMP_NUM_THREADS"], env["GOMP_SPINCOUNT"]) == ("2", "10000")
    mine = child_env(layout, {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}, torch_threads=2)
    assert (mine["OMP_NUM_THREADS"], mine["OMP_WAIT_POLICY"], "GOMP_SPINCOUNT" in mine) == ("1", "ACTIVE", False)
