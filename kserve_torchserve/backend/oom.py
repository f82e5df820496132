"""Did the kernel's OOM killer just kill something? For telling a worker killed for memory from one that crashed.

TorchServe answers a request whose worker died with "Worker died.", and with 507 when it
saw the worker exit with 137 (SIGKILL, what the OOM killer sends); but it reads the exit
status the moment the worker's socket closes, often before Java has reaped the process, and
then answers 500. The kernel counts its OOM kills (``oom_kill`` in /proc/vmstat, every kill
on the machine, those inside containers included); a worker death while that count moved
is taken as an OOM kill. ``mark()`` runs every few seconds (the supervisor's health round),
so only kills of the last two rounds count: another container's OOM kill must coincide
with a crash of ours to be mistaken for it.
"""

from __future__ import annotations

from pathlib import Path

VMSTAT = Path("/proc/vmstat")


def read_oom_kills(path: Path = VMSTAT) -> int | None:
    """The kernel's count of OOM kills, or None where it is not readable."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class OomKills:
    def __init__(self, path: Path = VMSTAT) -> None:
        self._path = path
        count = read_oom_kills(path)
        self._marks: tuple[int | None, int | None] = (count, count)  # (older, newer)

    def mark(self) -> None:
        self._marks = (self._marks[1], read_oom_kills(self._path))

    def recent(self) -> bool:
        """Whether the OOM killer killed something since the older of the last two marks."""
        older = self._marks[0]
        now = read_oom_kills(self._path)
        return older is not None and now is not None and now > older
