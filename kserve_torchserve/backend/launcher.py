"""TorchServe's own launcher (``ts.model_server``), made to stop fast, die with our server, and tell how Java ended.

- Stop (SIGTERM from our server, or from the kernel when our server dies: PR_SET_PDEATHSIG):
  freeze the JVM (SIGSTOP: it must not restart the workers we are stopping), TERM the
  workers and wait for them up to a grace period (KSERVE_TORCHSERVE_STOP_GRACE, seconds),
  then SIGKILL the JVM and whatever is left. Why not TERM the JVM and wait: its shutdown
  hook spends 2 s in Netty's quiet period and then SIGKILLs the workers itself, while
  nothing is left for it to do: our server drains every request before stopping
  TorchServe, and TorchServe keeps no state (``--ncs``: no config snapshots). Exit 0 when
  every worker exited on SIGTERM, 1 when one had to be killed; one line on stdout says which.
- Java ends on its own (crash, ``kill -9``, OOM killer): stop its workers the same way (they
  would be orphans), then exit as Java did: its exit code, or killed by the same signal,
  so that our server reports what really happened instead of the 0 ``ts.model_server``
  returns whatever Java did.
- Started by a server that is already gone (it died before PR_SET_PDEATHSIG took effect):
  exit at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.02
_ORPHAN_GRACE_S = 2.0  # workers of a JVM that died: TERM, then KILL after this

GRACE_ENV = "KSERVE_TORCHSERVE_STOP_GRACE"
PARENT_ENV = "KSERVE_TORCHSERVE_PARENT_PID"  # the server that started us
STOPPED_LINE = "kserve-torchserve launcher:"  # starts the one line saying how TorchServe was stopped


class _Java(subprocess.Popen):  # type: ignore[type-arg]
    """``ts.model_server`` starts Java with ``subprocess.Popen`` and keeps the object to itself;
    this subclass, put in its place, remembers it (its pid, and its exit status afterwards)."""

    started: "_Java | None" = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _Java.started = self


def group_members(pgid: int, exclude: int | None) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``, besides ``exclude``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _members(pgid: int) -> list[int]:
    """Live processes of our group, besides us."""
    return group_members(pgid, os.getpid())


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_workers(java_pid: int | None, grace_s: float) -> tuple[int, int]:
    """TERM every process of our group but us and Java, wait up to ``grace_s``, KILL the rest:
    (workers, workers killed)."""
    pgid = os.getpgid(0)
    workers = [pid for pid in _members(pgid) if pid != java_pid]
    for pid in workers:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = workers
    while left and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        alive = set(_members(pgid))
        left = [pid for pid in left if pid in alive]
    for pid in left:
        _signal(pid, signal.SIGKILL)
    return len(workers), len(left)


def _stop(signum: int, frame: FrameType | None) -> None:
    """On SIGTERM: workers TERMed, then the JVM and every straggler KILLed; exit 0, or 1 if a worker needed KILL."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = time.monotonic()
    java = _Java.started
    java_pid = java.pid if java is not None and java.returncode is None else None
    if java_pid is not None:
        _signal(java_pid, signal.SIGSTOP)  # frozen: it cannot restart the workers we stop
    workers, killed = stop_workers(java_pid, float(os.environ.get(GRACE_ENV, "30")))
    if java_pid is not None:
        _signal(java_pid, signal.SIGKILL)
    for pid in _members(os.getpgid(0)):  # anything started meanwhile
        _signal(pid, signal.SIGKILL)
    how = f"{workers - killed} of {workers} workers exited on SIGTERM" + (f", {killed} killed" if killed else "")
    try:
        print(f"{STOPPED_LINE} stopped TorchServe in {time.monotonic() - started:.1f}s: {how}; its JVM was ended "
              "with SIGKILL (requests were drained first and it keeps no state)", flush=True)
    except OSError:
        pass  # our server died (PR_SET_PDEATHSIG) and no one reads our output any more
    os._exit(1 if killed else 0)  # from the handler: the main thread is still inside Java's wait()


def exit_like(returncode: int) -> None:
    """Exit as Java did: the same code, or killed by the same signal."""
    if returncode >= 0:
        sys.exit(returncode)
    sys.stdout.flush()
    if -returncode != signal.SIGKILL:  # its handler cannot be set, and it is always the default
        signal.signal(-returncode, signal.SIG_DFL)
    os.kill(os.getpid(), -returncode)
    sys.exit(128 - returncode)  # a signal whose default is not to end the process


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, _stop)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent died before prctl took effect: we were re-parented. Compared with the pid the
    # server gave us, not with 1, because the server may be PID 1 itself (a container without
    # an init) or under a subreaper.
    expected = os.environ.get(PARENT_ENV)
    if (expected is not None and os.getppid() != int(expected)) or (expected is None and os.getppid() == 1):
        return
    import ts.model_server

    subprocess.Popen = _Java  # type: ignore[misc]  # ts.model_server calls subprocess.Popen(...)
    sys.argv = ["torchserve", *argv]
    ts.model_server.start()
    java = _Java.started
    if java is None or java.returncode is None:
        sys.exit(1)  # it never started Java (ts.model_server printed why)
    stop_workers(java.pid, _ORPHAN_GRACE_S)  # Java ended on its own: its workers must not outlive it
    exit_like(java.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
