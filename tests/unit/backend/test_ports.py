"""backend/ports.py: free ports below the ephemeral range, where no outgoing connection takes them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kserve_torchserve.backend import ports


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picked = ports.free_ports(5)
    assert len(set(picked)) == 5 and all(ports._LOWEST <= p < start for p in picked)
    held = []
    try:
        for port in picked:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", port))
    finally:
        for s in held:
            s.close()


def test_a_port_in_use_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        taken = busy.getsockname()[1]
        monkeypatch.setattr(ports, "_ephemeral_start", lambda: taken + 1)  # room: taken and the 999+ below it
        monkeypatch.setattr(ports, "_LOWEST", taken - 1000)
        monkeypatch.setattr(ports, "_TRIES", 1001)  # every candidate, the busy one included
        assert taken not in ports.free_ports(1000)
    finally:
        busy.close()


def test_with_no_room_below_the_ephemeral_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_start", lambda: ports._LOWEST + 10)
    picked = ports.free_ports(3)
    assert len(set(picked)) == 3 and all(p >= ports._LOWEST + 10 or p < ports._LOWEST for p in picked)
