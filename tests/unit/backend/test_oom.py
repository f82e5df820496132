"""Counting the kernel's OOM kills across health rounds (a fake /proc/vmstat; the real one: integration)."""

from __future__ import annotations

from pathlib import Path

from kserve_torchserve.backend.oom import OomKills, read_oom_kills


def _vmstat(path: Path, kills: int) -> None:
    path.write_text(f"nr_free_pages 1000\noom_kill {kills}\npgfault 5\n")


def test_a_kill_counts_for_two_rounds_then_is_old_news(tmp_path: Path) -> None:
    vmstat = tmp_path / "vmstat"
    _vmstat(vmstat, 3)
    kills = OomKills(vmstat)
    assert not kills.recent()
    _vmstat(vmstat, 4)  # the OOM killer struck
    assert kills.recent()
    kills.mark()
    assert kills.recent()  # one round later: still counts (the answer may come just after a mark)
    kills.mark()
    assert not kills.recent()


def test_no_count_means_never_an_oom_kill(tmp_path: Path) -> None:
    assert read_oom_kills(tmp_path / "missing") is None
    (tmp_path / "vmstat").write_text("nr_free_pages 1000\n")
    kills = OomKills(tmp_path / "vmstat")
    assert not kills.recent()


def test_the_real_count_is_read() -> None:
    assert read_oom_kills() is None or read_oom_kills() >= 0  # type: ignore[operator]
