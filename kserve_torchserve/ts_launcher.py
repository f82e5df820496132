"""TorchServe's own launcher (``ts.model_server``), made to die with the server that started it.

Our server stops TorchServe by signalling its process group. If our server is killed
instead (SIGKILL, OOM killer, a crashed parent), nothing would stop TorchServe, and
its Java frontend and workers would live on as orphans. So this launcher asks the
kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), and on SIGTERM passes it
to its whole process group: Java and the workers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1


def _stop_group(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.killpg(os.getpgid(0), signal.SIGTERM)  # Java and workers, then ourselves


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, _stop_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        return
    from ts.model_server import start

    sys.argv = ["torchserve", *argv]
    start()


if __name__ == "__main__":
    main(sys.argv[1:])
