"""scripts/noisy-tests.sh, the tests beside busy loops: it names what fails, says so in its exit
status, and leaves none of its loops running, whichever way its test files went."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT

LOOP = ["while True: pass"]


def _loops() -> set[int]:
    """PIDs of the busy loops the script starts (``python -c 'while True: pass'``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it ended while we looked
            continue
        if [a.decode(errors="replace") for a in argv[-2:-1]] == LOOP and b"-c" in argv:
            found.add(int(entry.name))
    return found


def _run(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "noisy-tests.sh"), *map(str, paths)], cwd=ROOT,
                          env={**os.environ, "NOISE": "2"}, capture_output=True, text=True, timeout=120)


def test_passing_files_pass_and_a_failing_one_is_named_and_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "test_fine.py").write_text("def test_fine() -> None:\n    assert 1 + 1 == 2\n")
    before = _loops()

    passed = _run(tmp_path / "test_fine.py")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "beside 2 busy loops" in passed.stdout and "all 1 files passed" in passed.stdout
    assert _loops() <= before

    (tmp_path / "test_broken.py").write_text("def test_broken() -> None:\n    assert 'on an idle machine' == ''\n")
    failed = _run(tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"FAILED  {tmp_path / 'test_broken.py'}" in failed.stdout
    assert f"ok      {tmp_path / 'test_fine.py'}" in failed.stdout
    assert "1 of 2 files failed" in failed.stdout
    assert _loops() <= before
