"""scripts/noisy-tests.sh, the tests beside busy loops: it names what fails, says so in its exit
status, and leaves none of its loops running, whichever way its test files went."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT



def busy_loops() -> set[int]:
    """PIDs of the busy loops the script starts (``python -c 'while True: pass'``). The files the
    test below hands the script import it too, to see whether they ran beside the loops."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")  # NUL-terminated: the last item is empty
        except OSError:  # not a process, or it ended while we looked
            continue
        if argv[-3:-1] == [b"-c", b"while True: pass"]:
            found.add(int(entry.name))
    return found


def _run(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "noisy-tests.sh"), *map(str, paths)], cwd=ROOT,
                          env={**os.environ, "NOISE": "2"}, capture_output=True, text=True, timeout=120)


# Two test files for the script to run. One passes only beside the loops, so its passing shows that
# the loops run while a file is tested; the other passes only on an idle machine, the kind of test
# the script is there to catch.
BESIDE = """from tests.unit.test_noisy_tests import busy_loops

def test_runs_beside_the_busy_loops() -> None:
    assert len(busy_loops()) >= 2
"""
IDLE_ONLY = """from tests.unit.test_noisy_tests import busy_loops

def test_passes_only_on_an_idle_machine() -> None:
    assert not busy_loops()
"""


def test_a_file_runs_beside_the_loops_and_one_that_needs_an_idle_machine_is_named_and_fails_the_run(
        tmp_path: Path) -> None:
    (tmp_path / "test_beside.py").write_text(BESIDE)
    before = busy_loops()

    passed = _run(tmp_path / "test_beside.py")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "beside 2 busy loops" in passed.stdout and "all 1 files passed" in passed.stdout
    assert busy_loops() <= before

    (tmp_path / "test_idle_only.py").write_text(IDLE_ONLY)
    failed = _run(tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"FAILED  {tmp_path / 'test_idle_only.py'}" in failed.stdout
    assert f"ok      {tmp_path / 'test_beside.py'}" in failed.stdout
    assert "1 of 2 files failed" in failed.stdout
    assert busy_loops() <= before
