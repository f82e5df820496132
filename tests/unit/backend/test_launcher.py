"""The launcher's stop and exit, with real processes in a process group of their own (not pytest's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from kserve_torchserve.backend import launcher

# A stand-in for TorchServe's launcher after it started Java: a "JVM" and two "workers" in our group.
_SCENE = textwrap.dedent("""
    import signal, subprocess, sys, time
    from kserve_torchserve.backend import launcher
    stubborn = sys.argv[1] == "stubborn"
    worker = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    ignoring = [sys.executable, "-c",
                "import signal, time; signal.signal(15, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"]
    launcher._Java.started = subprocess.Popen(worker, stdout=subprocess.DEVNULL)  # the JVM
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
               for command in (worker, ignoring if stubborn else worker)]
    for started in workers:
        started.stdout.readline()  # its SIGTERM handler is set
    signal.signal(signal.SIGTERM, launcher._stop)
    print("pids", launcher._Java.started.pid, *(w.pid for w in workers), flush=True)
    time.sleep(60)
""")


def _group(pgid: int) -> list[int]:
    return launcher.group_members(pgid, exclude=None)


def _scene(kind: str, grace_s: float) -> tuple[subprocess.Popen[str], list[int]]:
    env = {**os.environ, launcher.GRACE_ENV: str(grace_s)}
    proc = subprocess.Popen([sys.executable, "-c", _SCENE, kind], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first[0] == "pids", first
    return proc, [int(pid) for pid in first[1:]]


@pytest.mark.parametrize("kind,code,said", [("polite", 0, "2 of 2 workers exited on SIGTERM"),
                                             ("stubborn", 1, "1 of 2 workers exited on SIGTERM, 1 killed")])
def test_sigterm_stops_workers_then_the_jvm_and_says_how(kind: str, code: int, said: str) -> None:
    proc, pids = _scene(kind, grace_s=1.0)
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == code
        assert said in out and "JVM was ended with SIGKILL" in out
        assert time.monotonic() - started < 5  # the grace (1 s) and no more than a little
        deadline = time.monotonic() + 5
        while _group(proc.pid) and time.monotonic() < deadline:  # nothing of the group lives on
            time.sleep(0.05)
        assert _group(proc.pid) == []
    finally:
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


@pytest.mark.parametrize("returncode", [0, 3, -9, -15])
def test_exits_as_java_did(returncode: int) -> None:
    code = f"from kserve_torchserve.backend import launcher; launcher.exit_like({returncode})"
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == returncode
