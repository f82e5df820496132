"""Keeps TorchServe alive and model readiness true to TorchServe's real state.

- start: launch, poll (no fixed sleeps) until Ping is healthy, hand TorchServe its
  models (``on_started``: TorchServe starts empty), then wait until every model
  has its minimum of READY workers; fail with TorchServe's last log lines otherwise.
  A model whose workers cannot load (``failure`` set by ``on_started``) is left out: it
  stays not ready, with its reason, and the others are served.
- run: readiness drops the moment the process exits; the supervisor restarts it
  with exponential backoff, and gives up (TorchServeGaveUp) after more than
  ``max_restarts`` failures within ``restart_window_s``. While TorchServe runs, it is
  asked every ``health_interval_s`` for its worker states (health.py: what a stopped JVM,
  or a model whose workers are restarting, does to readiness).
The clock and sleep are injectable so the restart policy is testable without waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Protocol, Sequence

from ..errors import ManagementError, TorchServeGaveUp, TorchServeStartError, UpstreamError
from .health import Health, Readiness
from .process import DYING_WORDS_S, describe_exit

logger = logging.getLogger(__name__)

_POLL_S = 0.25
_HEALTH_TIMEOUT_S = 2.0  # a TorchServe that takes longer to describe a model is not answering


class Process(Protocol):
    @property
    def returncode(self) -> int | None: ...

    async def start(self) -> None: ...
    async def wait(self) -> int: ...
    async def stop(self, grace_s: float) -> None: ...
    async def kill_leftovers(self) -> None: ...
    def last_lines(self, within_s: float | None = None) -> str: ...


class HealthClient(Protocol):
    """What the supervisor asks of TorchServeClient: is TorchServe up, are a model's workers READY."""

    async def ping(self, timeout: float = ...) -> bool: ...
    async def describe(self, model: str, version: str | None = ..., timeout: float = ...) -> list[dict[str, object]]: ...


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_s: float = 300.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0

    def backoff(self, failures: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(failures - 1, 0)))


def workers_ready(description: Sequence[dict[str, object]], minimum_only: bool = True) -> bool:
    """TorchServe's own rule (its OIP ModelReady): READY workers >= minWorkers, for every version.

    ``minimum_only=False``: one READY worker is enough (it can serve; more are starting,
    as while scaling up, or restarting after a worker died).
    """
    if not description:
        return False
    for version in description:
        workers = version.get("workers") or []
        assert isinstance(workers, list)
        ready = sum(1 for w in workers if isinstance(w, dict) and w.get("status") == "READY")
        minimum = version.get("minWorkers", 1)
        needed = max(int(minimum) if isinstance(minimum, (int, str)) else 1, 1) if minimum_only else 1
        if ready < needed:
            return False
    return True


class Supervisor:
    def __init__(
        self,
        process_factory: Callable[[], Process],
        client: HealthClient,
        models: Iterable[Readiness] | Callable[[], Iterable[Readiness]],
        startup_timeout_s: float,
        grace_period_s: float,
        health_interval_s: float,
        policy: RestartPolicy,
        on_restart: Callable[[], None] = lambda: None,
        on_started: Callable[[], Awaitable[None]] | None = None,
        on_health_round: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._factory = process_factory
        self._client = client
        # What to keep ready: a fixed list, or (with run-time registration) whatever is served now.
        self._models: Callable[[], Iterable[Readiness]] = models if callable(models) else (lambda: list(models))
        self._startup_timeout_s = startup_timeout_s
        self._grace_period_s = grace_period_s
        self._health_interval_s = health_interval_s
        self._policy = policy
        self._on_restart = on_restart
        self._on_started = on_started  # after each start: give TorchServe its models (management's restore)
        self._on_health_round = on_health_round  # every health_interval_s while TorchServe runs (oom.py's mark)
        self._clock = clock
        self._sleep = sleep
        self._failures: collections.deque[float] = collections.deque()
        self._stopping = False
        self._health = Health(lambda model: self._model_ready(model, serving=True), clock, _HEALTH_TIMEOUT_S)
        self.process: Process | None = None
        self.restarts = 0
        self.up = False  # TorchServe runs and has every model back

    @property
    def available(self) -> bool:
        """TorchServe runs, has every model back, and answers: model changes may go ahead."""
        return self.up and self._health.answering

    def _served(self) -> list[Readiness]:
        """The models TorchServe should be serving: all but those whose workers could not load."""
        return [m for m in self._models() if getattr(m, "failure", None) is None]

    def _set_ready(self, ready: bool) -> None:
        for model in self._served():
            model.ready = ready

    async def _model_ready(self, model: Readiness, serving: bool = False) -> bool | None:
        """At start: every minimum worker READY. While serving (``serving``): one READY worker is enough.
        None: TorchServe did not answer in time."""
        try:
            description = await self._client.describe(model.name, getattr(model, "ts_version", None),
                                                      timeout=_HEALTH_TIMEOUT_S)
        except UpstreamError as exc:
            return False if exc.http_status == 404 else None
        return workers_ready(description, minimum_only=not serving)

    async def _models_ready(self) -> bool:
        for model in self._served():
            if not await self._model_ready(model):
                return False
        return True

    async def start(self) -> None:
        """Start TorchServe and wait until it serves every model; TorchServeStartError otherwise."""
        process = self._factory()
        self.process = process
        self._on_restart()  # e.g. forget the old instance's auth keys
        await process.start()
        deadline = self._clock() + self._startup_timeout_s
        started = False
        while True:
            if process.returncode is not None:
                await process.wait()  # drain the log so the tail is complete
                raise TorchServeStartError(
                    f"TorchServe exited with code {process.returncode} during start-up. Last lines:\n{process.last_lines()}"
                )
            if not started and await self._client.ping():
                started = True
                if self._on_started is not None:
                    await self._give_models(process, deadline)
            if started and await self._models_ready():
                break
            if self._clock() > deadline:
                await process.stop(self._grace_period_s)
                raise self._not_ready(process)
            await self._sleep(_POLL_S)
        self._set_ready(True)
        self._health.reset()
        self.up = True
        logger.info("TorchServe is ready: %s", ", ".join(sorted({m.name for m in self._served()})) or "no models yet")

    def _not_ready(self, process: Process) -> TorchServeStartError:
        return TorchServeStartError(
            f"TorchServe was not ready after {self._startup_timeout_s:.0f}s "
            f"(raise --startup_timeout if models load slowly). Last lines:\n{process.last_lines()}"
        )

    async def _give_models(self, process: Process, deadline: float) -> None:
        """on_started within what is left of the start-up time; a failure stops this TorchServe."""
        assert self._on_started is not None
        try:
            await asyncio.wait_for(self._on_started(), max(deadline - self._clock(), 0.1))
        except asyncio.TimeoutError:
            await process.stop(self._grace_period_s)
            raise self._not_ready(process) from None
        except ManagementError as exc:
            await process.stop(self._grace_period_s)
            raise TorchServeStartError(f"{exc.message}. Last lines:\n{process.last_lines()}") from None

    async def _watch(self, process: Process) -> int:
        """Wait for ``process`` to exit, re-reading worker states meanwhile; an exit ends a round at once."""
        exited = asyncio.ensure_future(process.wait())
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=self._health_interval_s)
                if done:
                    return exited.result()
                self._on_health_round()
                health = asyncio.ensure_future(self._health.round(self._served()))
                await asyncio.wait({exited, health}, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    health.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await health
                    return exited.result()
                self._health.follow(health.result())
        finally:
            if not exited.done():
                exited.cancel()

    async def run(self) -> None:
        """Supervise until stop(); raises TorchServeGaveUp when restarts keep failing."""
        while not self._stopping:
            assert self.process is not None, "start() first"
            code = await self._watch(self.process)
            if self._stopping:
                return
            self.up = False
            self._set_ready(False)
            logger.error("TorchServe's JVM exited unexpectedly: %s. Its lines in the last %.0fs:\n%s",
                         describe_exit(code), DYING_WORDS_S, self.process.last_lines(within_s=DYING_WORDS_S))
            await self.process.kill_leftovers()
            while True:
                now = self._clock()
                self._failures.append(now)
                while self._failures and self._failures[0] < now - self._policy.window_s:
                    self._failures.popleft()
                if len(self._failures) > self._policy.max_restarts:
                    raise TorchServeGaveUp(
                        f"TorchServe failed {len(self._failures)} times within {self._policy.window_s:.0f}s; giving up"
                    )
                delay = self._policy.backoff(len(self._failures))
                logger.warning("restarting TorchServe in %.1fs (failure %d)", delay, len(self._failures))
                await self._sleep(delay)
                if self._stopping:
                    return
                try:
                    await self.start()
                    self.restarts += 1
                    break
                except TorchServeStartError as exc:
                    logger.error("%s", exc)

    async def stop(self) -> None:
        self._stopping = True
        self.up = False
        self._set_ready(False)
        if self.process is not None:
            await self.process.stop(self._grace_period_s)
