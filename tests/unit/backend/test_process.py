"""TorchServeProcess's reports: how a process ended, and which of its lines belong to an exit."""

from __future__ import annotations

import time
from pathlib import Path

from kserve_torchserve.backend.process import Layout, TorchServeProcess, describe_exit


def test_an_exit_is_described_as_it_happened() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "killed by SIGKILL (signal 9)"
    assert describe_exit(-15) == "killed by SIGTERM (signal 15)"
    assert describe_exit(None) == "still running"


def test_only_the_lines_written_just_before_an_exit_are_its_dying_words(tmp_path: Path) -> None:
    process = TorchServeProcess(Layout(tmp_path), env={})
    now = time.monotonic()
    process._tail.extend([(now - 60, "an old traceback of another event"), (now - 1, "java.lang.OutOfMemoryError")])
    process.exited_at = now
    assert process.last_lines(within_s=5) == "java.lang.OutOfMemoryError"
    assert process.last_lines() == "an old traceback of another event\njava.lang.OutOfMemoryError"
    process._tail.clear()
    process._tail.append((now - 60, "old"))
    assert process.last_lines(within_s=5) == "(no output in the 5s before)"
