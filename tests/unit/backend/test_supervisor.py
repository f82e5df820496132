"""The restart policy and readiness rules, with a fake process and clock (the real ones: integration)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from kserve_torchserve.errors import TorchServeGaveUp, TorchServeStartError, UpstreamError
from kserve_torchserve.backend.health import WORKER_RESTART_GRACE_S
from kserve_torchserve.backend.supervisor import RestartPolicy, Supervisor, workers_ready


class FakeProcess:
    def __init__(self, exit_immediately: bool = False) -> None:
        self.returncode: int | None = None
        self.exited = asyncio.Event()
        self.stopped = False
        self.leftovers_killed = False
        self.exit_immediately = exit_immediately

    async def start(self) -> None:
        if self.exit_immediately:
            self.die(1)

    def die(self, code: int) -> None:
        self.returncode = code
        self.exited.set()

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def stop(self, grace_s: float) -> None:
        self.stopped = True
        self.die(-15)

    async def kill_leftovers(self) -> None:
        self.leftovers_killed = True

    def last_lines(self, within_s: float | None = None) -> str:
        return "last words" if within_s is None else "dying words"


@dataclass
class FakeClient:
    healthy: bool = True
    worker_status: str = "READY"
    answering: bool = True
    described: list[str] = field(default_factory=list)

    async def ping(self, timeout: float = 2.0) -> bool:
        return self.healthy

    async def describe(self, model: str, version: str | None = None, timeout: float = 5.0) -> list[dict[str, object]]:
        self.described.append(model)
        if not self.answering:  # a stopped JVM: the call runs into its deadline
            raise UpstreamError(504, f"TorchServe did not answer in time about model {model}")
        return [{"minWorkers": 1, "workers": [{"status": self.worker_status}]}]


@dataclass
class FakeModel:
    name: str
    ready: bool = False
    failure: str | None = None


@dataclass
class Clock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make(processes: list[FakeProcess], backend: FakeClient, clock: Clock, **policy: float) -> tuple[Supervisor, FakeModel]:
    model = FakeModel("m")
    supervisor = Supervisor(
        process_factory=lambda: processes.pop(0),
        client=backend,
        models=[model],
        startup_timeout_s=10,
        grace_period_s=1,
        health_interval_s=0.01,
        policy=RestartPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )
    return supervisor, model


def test_workers_ready_follows_torchserve_rule() -> None:
    assert workers_ready([{"minWorkers": 2, "workers": [{"status": "READY"}, {"status": "READY"}]}])
    assert not workers_ready([{"minWorkers": 2, "workers": [{"status": "READY"}, {"status": "UNLOADING"}]}])
    assert not workers_ready([])


async def test_start_waits_for_workers_then_marks_ready() -> None:
    backend = FakeClient(worker_status="STARTING")
    clock = Clock()
    supervisor, model = make([FakeProcess()], backend, clock)
    task = asyncio.ensure_future(supervisor.start())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and not model.ready
    backend.worker_status = "READY"
    await task
    assert model.ready


async def test_start_times_out_with_last_lines() -> None:
    clock = Clock()
    first = FakeProcess()
    supervisor, model = make([first], FakeClient(healthy=False), clock)
    with pytest.raises(TorchServeStartError, match="(?s)not ready after 10s.*last words"):
        await supervisor.start()
    assert first.stopped and not model.ready


async def test_start_fails_fast_when_process_exits() -> None:
    supervisor, _ = make([FakeProcess(exit_immediately=True)], FakeClient(), Clock())
    with pytest.raises(TorchServeStartError, match="exited with code 1 during start-up"):
        await supervisor.start()


async def test_crash_drops_readiness_at_once_and_restarts_with_backoff() -> None:
    clock = Clock()
    first, second = FakeProcess(), FakeProcess()
    supervisor, model = make([first, second], FakeClient(), clock, backoff_initial_s=2.0)
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    await asyncio.sleep(0.05)
    readiness_seen: list[bool] = []
    real_sleep = clock.sleep

    async def sleep_and_record(seconds: float) -> None:
        readiness_seen.append(model.ready)
        await real_sleep(seconds)

    supervisor._sleep = sleep_and_record  # observe readiness during the backoff
    first.die(137)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if supervisor.restarts:
            break
    assert readiness_seen and readiness_seen[0] is False
    assert 2.0 in clock.sleeps
    assert supervisor.restarts == 1 and model.ready
    await supervisor.stop()
    await run
    assert second.stopped


async def test_gives_up_after_too_many_failures_in_window() -> None:
    clock = Clock()
    processes = [FakeProcess()] + [FakeProcess(exit_immediately=True) for _ in range(3)]
    supervisor, model = make(processes, FakeClient(), clock, max_restarts=2, window_s=1000, backoff_initial_s=1)
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    await asyncio.sleep(0.02)
    supervisor.process.die(1)  # type: ignore[union-attr]
    with pytest.raises(TorchServeGaveUp, match="failed 3 times within 1000s"):
        await asyncio.wait_for(run, 5)
    assert not model.ready
    assert clock.sleeps[:2] == [1, 2]  # exponential backoff


async def test_failures_outside_the_window_are_forgiven() -> None:
    clock = Clock()
    processes = [FakeProcess() for _ in range(4)]
    supervisor, model = make(processes, FakeClient(), clock, max_restarts=1, window_s=10, backoff_initial_s=1)
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    for _ in range(3):
        await asyncio.sleep(0.02)
        clock.now += 100  # each crash long after the previous one
        supervisor.process.die(1)  # type: ignore[union-attr]
        for _ in range(50):
            await asyncio.sleep(0.01)
            if model.ready:
                break
    assert supervisor.restarts == 3 and not run.done()
    await supervisor.stop()
    await run


async def test_a_model_without_ready_workers_stays_ready_while_torchserve_restarts_them() -> None:
    """A crashed or timed-out worker comes back in seconds and TorchServe queues requests meanwhile:
    readiness (and so every request) must not flap; only a model whose workers stay down loses it."""
    backend, clock = FakeClient(), Clock()
    supervisor, model = make([FakeProcess()], backend, clock)
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    backend.worker_status = "UNLOADING"
    await asyncio.sleep(0.05)
    assert model.ready  # within the grace
    clock.now += WORKER_RESTART_GRACE_S
    await asyncio.sleep(0.05)
    assert not model.ready  # down for longer than any restart takes
    backend.worker_status = "READY"
    await asyncio.sleep(0.05)
    assert model.ready
    await supervisor.stop()
    await run


async def test_torchserve_not_answering_drops_readiness_at_once_without_a_restart(
        caplog: pytest.LogCaptureFixture) -> None:
    backend, clock = FakeClient(), Clock()
    first = FakeProcess()
    supervisor, model = make([first], backend, clock)
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    with caplog.at_level(logging.WARNING, logger="kserve_torchserve.backend.supervisor"):
        backend.answering = False  # SIGSTOP
        await asyncio.sleep(0.05)
        assert not model.ready and supervisor.up and supervisor.restarts == 0 and not first.stopped
        assert not supervisor.available  # no model changes meanwhile
        backend.answering = True  # SIGCONT
        await asyncio.sleep(0.05)
        assert model.ready and supervisor.restarts == 0 and supervisor.available
    lines = [r.getMessage() for r in caplog.records]
    assert sum("not answering" in line for line in lines) == 1  # once, however long it lasts
    assert sum("answers again" in line for line in lines) == 1
    await supervisor.stop()
    await run


async def test_a_model_that_could_not_load_is_left_out() -> None:
    backend, clock = FakeClient(), Clock()
    supervisor, model = make([FakeProcess()], backend, clock)
    broken = FakeModel("broken", failure="its workers could not load: boom")
    supervisor._models = lambda: [model, broken]
    await supervisor.start()  # does not wait for it
    run = asyncio.ensure_future(supervisor.run())
    await asyncio.sleep(0.05)
    assert model.ready and not broken.ready
    assert "broken" not in backend.described  # never asked about
    await supervisor.stop()
    await run


async def test_an_exit_is_reported_as_it_happened_and_leaves_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    first, second = FakeProcess(), FakeProcess()
    supervisor, model = make([first, second], FakeClient(), clock)
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    with caplog.at_level(logging.ERROR, logger="kserve_torchserve.backend.supervisor"):
        first.die(-9)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if supervisor.restarts:
                break
    (line,) = [r.getMessage() for r in caplog.records if "exited" in r.getMessage()]
    assert "killed by SIGKILL (signal 9)" in line and "dying words" in line and "last words" not in line
    assert first.leftovers_killed
    await supervisor.stop()
    await run
