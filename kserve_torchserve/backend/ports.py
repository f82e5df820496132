"""Free loopback ports, for TorchServe's five listeners (and for tests and benchmarks)."""

from __future__ import annotations

import socket

from ..config.properties import LOOPBACK


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now; held open together so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
