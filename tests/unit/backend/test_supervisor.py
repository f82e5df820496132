"""The restart policy and readiness rules, with a fake process and clock (the real ones: integration)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from kserve_torchserve.errors import TorchServeGaveUp, TorchServeStartError
from kserve_torchserve.backend.supervisor import RestartPolicy, Supervisor, workers_ready


class FakeProcess:
    def __init__(self, exit_immediately: bool = False) -> None:
        self.returncode: int | None = None
        self.exited = asyncio.Event()
        self.stopped = False
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

    def last_lines(self) -> str:
        return "last words"


@dataclass
class FakeClient:
    healthy: bool = True
    worker_status: str = "READY"

    async def ping(self, timeout: float = 2.0) -> bool:
        return self.healthy

    async def describe(self, model: str, version: str | None = None, timeout: float = 5.0) -> list[dict[str, object]]:
        return [{"minWorkers": 1, "workers": [{"status": self.worker_status}]}]


@dataclass
class FakeModel:
    name: str
    ready: bool = False


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


async def test_worker_states_are_followed_while_running() -> None:
    backend = FakeClient()
    supervisor, model = make([FakeProcess()], backend, Clock())
    await supervisor.start()
    run = asyncio.ensure_future(supervisor.run())
    backend.worker_status = "STOPPED"
    await asyncio.sleep(0.1)
    assert not model.ready
    backend.worker_status = "READY"
    await asyncio.sleep(0.1)
    assert model.ready
    await supervisor.stop()
    await run
