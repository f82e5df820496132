"""TorchServe's own launcher (``ts.model_server``), made to die with the server that started it.

Our server stops TorchServe by signalling its process group. If our server is killed
instead (SIGKILL, OOM killer, a crashed parent), nothing would stop TorchServe, and
its Java frontend and workers would live on as orphans. So this launcher asks the
kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), and on SIGTERM passes it
to its whole process group (Java and the workers), waits for them up to a grace period
(KSERVE_TORCHSERVE_STOP_GRACE, seconds), and then KILLs what is left: seen here, a Java
whose parent had died did not always finish its shutdown on TERM alone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from types import FrameType

_PR_SET_PDEATHSIG = 1


GRACE_ENV = "KSERVE_TORCHSERVE_STOP_GRACE"
PARENT_ENV = "KSERVE_TORCHSERVE_PARENT_PID"  # the server that started us


def _others_alive(pgid: int) -> bool:
    """Any live process in our group besides us."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop_group(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # our own group-wide TERM must not end us first
    pgid = os.getpgid(0)
    os.killpg(pgid, signal.SIGTERM)  # Java and the workers shut down
    deadline = time.monotonic() + float(os.environ.get(GRACE_ENV, "30"))
    while time.monotonic() < deadline and _others_alive(pgid):
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)  # whatever is left, and ourselves


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, _stop_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent died before prctl took effect: we were re-parented. Compared with the pid the
    # server gave us, not with 1, because the server may be PID 1 itself (a container without
    # an init) or under a subreaper.
    expected = os.environ.get(PARENT_ENV)
    if (expected is not None and os.getppid() != int(expected)) or (expected is None and os.getppid() == 1):
        return
    from ts.model_server import start

    sys.argv = ["torchserve", *argv]
    start()


if __name__ == "__main__":
    main(sys.argv[1:])
