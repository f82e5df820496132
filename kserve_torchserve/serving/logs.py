"""One log line per failed request, and no log storms.

Every failed request, REST or gRPC, whichever layer refused it, is logged here, once:

    request failed: 400 POST /v2/models/digits/infer (request id abc): input pixels has shape [-1, 64]: ...

- a client's mistake (4xx) at INFO, never with a traceback (one at DEBUG, where there is one);
- a server-side failure (5xx) at WARNING; a traceback only for an exception nobody expected
  (a bug), at ERROR.

Identical lines (same status, route and reason; the request id left aside) are rate-limited:
the first is written (with its request id), the next ones within ``WINDOW_S`` are counted, and when the window ends
one line says ``N more like this in the last 10 s``. A 4 s TorchServe outage under load so
writes two lines instead of hundreds of tracebacks. At DEBUG nothing is held back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger(__name__)

WINDOW_S = 10.0  # long enough to fold a burst into one line, short enough to show a storm goes on
MAX_KEYS = 512  # distinct lines tracked at once; past it lines are written unfolded (memory stays bounded)
_MAX_FIELD = 200  # a client's path or request id is cut to this in the line
_MAX_REASON = 500


def clean(text: str, limit: int = _MAX_FIELD) -> str:
    """``text`` safe for one log line: no control characters (a forged line break), bounded length."""
    if text.isprintable() and len(text) <= limit:
        return text
    printable = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return printable + ("..." if len(text) > limit else "")


@dataclass
class _Seen:
    until: float
    level: int
    line: str
    folded: int = 0


class FoldingLog:
    """Writes a line, or counts it when the same line was written less than ``window_s`` ago."""

    def __init__(self, log: logging.Logger = logger, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def emit(self, level: int, key: str, line: str | None = None, exc: BaseException | None = None) -> None:
        """Write ``line`` (default: ``key``) unless a line of the same ``key`` was written within the window."""
        if not self._log.isEnabledFor(level):
            return
        line = key if line is None else line
        if self._log.isEnabledFor(logging.DEBUG):  # debugging: every line, as it happens
            self._log.log(level, "%s", line, exc_info=exc)
            return
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now < seen.until:
            seen.folded += 1
            return
        if seen is not None:
            self._flush(key)
        if len(self._seen) >= MAX_KEYS:
            self._expire(now)
        if len(self._seen) < MAX_KEYS:
            self._seen[key] = seen = _Seen(now + self._window_s, level, key)
            self._schedule(key, seen)
        self._log.log(level, "%s", line, exc_info=exc)

    def _schedule(self, key: str, seen: _Seen) -> None:
        # The summary must come even when the storm stops: a timer on the running loop
        # (there is one wherever requests are served); without one it comes with the next line.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(self._window_s, self._flush, key, seen)

    def _flush(self, key: str, only: _Seen | None = None) -> None:
        if only is not None and self._seen.get(key) is not only:
            return  # that window was summed up already and a new one began
        seen = self._seen.pop(key, None)
        if seen is not None and seen.folded:
            self._log.log(seen.level, "%d more like this in the last %.0f s: %s", seen.folded, self._window_s,
                          seen.line)

    def forget(self) -> None:
        """Drop what was seen (tests: each starts with no line folded)."""
        self._seen.clear()

    def _expire(self, now: float) -> None:
        for key in [key for key, seen in self._seen.items() if now >= seen.until]:
            self._flush(key)


FOLDED = FoldingLog()


def request_failed(status: int, route: str, request_id: str | None, reason: str,
                   exc: BaseException | None = None, unexpected: bool = False) -> None:
    """The one line for a failed request. ``unexpected``: a bug, logged with its traceback."""
    where, why = f"request failed: {status} {clean(route)}", clean(reason, _MAX_REASON)
    key = f"{where}: {why}"
    line = f"{where} (request id {clean(request_id)}): {why}" if request_id else key
    if unexpected:
        FOLDED.emit(logging.ERROR, key, line, exc)
        return
    level = logging.INFO if status < 500 else logging.WARNING
    FOLDED.emit(level, key, line, exc if logger.isEnabledFor(logging.DEBUG) else None)
