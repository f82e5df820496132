"""One deadline per connection, on at most one event-loop timer.

Why: arming and cancelling a uvloop timer costs ~2.2 us, and the slow-client deadlines
(serving/deadlines.py) and TorchServe's response timeouts (http_pool.py) did it on every request
of a kept-alive connection. A ``Deadline`` that moves later leaves its armed timer be (the timer,
when it fires, sleeps again until the deadline) and re-arms it only when it moves earlier. It
lives here, the lowest layer both of its users may import.
"""

from __future__ import annotations

import asyncio
from typing import Callable

_EARLY_S = 0.001  # how early a timer may fire (the loop's clock resolution)


class Deadline:
    """Calls ``expired()`` once the time last ``set`` is up; the caller decides there whether anything waited."""

    __slots__ = ("_loop", "_expired", "_due", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._due = 0.0  # in the loop's time
        self._timer: asyncio.TimerHandle | None = None

    def set(self, delay_s: float) -> None:
        """The deadline is ``delay_s`` from now: the timer is moved only if it would fire too late."""
        self._due = self._loop.time() + delay_s
        if self._timer is None or self._due < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._arm()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self._timer = self._loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._due - self._loop.time() > _EARLY_S:  # set later since the timer was armed
            self._arm()
            return
        self._expired()
