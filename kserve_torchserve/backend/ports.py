"""Free loopback ports, for TorchServe's five listeners (and for tests and benchmarks).

Why not the kernel's ``bind(0)``: it hands out ports from the ephemeral range, the same range
every outgoing connection takes its local port from. Between our picking a port and TorchServe
(or a test's server) binding it, a connection of anyone's could take it: "address already in
use" (seen in a full test run: a server's own port, taken in that window). Ports are picked
below the ephemeral range instead, where only a listener can take them.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

from ..config.properties import LOOPBACK

_LOWEST = 10000  # below: well-known and registered services' usual ports
_TRIES = 200


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(count: int) -> list[int]:
    """Ports free now, below the ephemeral range where it leaves room (else the kernel's choice);
    held open together so they are distinct."""
    sockets: list[socket.socket] = []
    top = _ephemeral_start()
    candidates = random.sample(range(_LOWEST, top), min(_TRIES, top - _LOWEST)) if top - _LOWEST >= 1000 else []
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, port))
            except OSError:  # in use
                s.close()
                continue
            sockets.append(s)
        while len(sockets) < count:  # no room below the ephemeral range: the kernel's choice
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
