"""Start-up: defaults among versions, traffic splits from TS_TRAFFIC_SPLIT or a model's config, and models
whose workers cannot load."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from kserve_torchserve.backend import worker_log
from kserve_torchserve.backend.worker_log import LoadFailures
from kserve_torchserve.config.model_config import ModelSpec, read_model_config
from kserve_torchserve.config.properties import model_entry
from kserve_torchserve.config.settings import parse_ts_env
from kserve_torchserve.errors import ManagementError, StartupError
from kserve_torchserve.management.operations import Operations
from kserve_torchserve.management.registration import Limits
from kserve_torchserve.management.registry import ModelRegistry
from kserve_torchserve.serving.model import TorchServeModel


def operations() -> Operations:
    return Operations(
        ModelRegistry(), None, Path("/store"), Limits(8, 1.0),  # type: ignore[arg-type]
        entry_for=lambda spec: model_entry(spec, parse_ts_env({}), 120),
        make_model=lambda spec, timeout, ts_version: TorchServeModel(spec, None, timeout, 10, ts_version),  # type: ignore[arg-type]
        backend_up=lambda: True,
    )


def spec(version: str, default: bool = False, traffic: Any = None) -> ModelSpec:
    return ModelSpec("m", version, f"m-{version}.mar", "h", default=default, traffic=traffic)


def test_the_highest_version_is_the_default_unless_the_snapshot_says_otherwise() -> None:
    ops = operations()
    ops.add_startup([spec("1.9"), spec("1.10"), spec("1.2")], {})
    assert ops.registry.models["m"].default == "1.10"
    ops = operations()
    ops.add_startup([spec("1.0", default=True), spec("2.0")], {})
    assert ops.registry.models["m"].default == "1.0"


def test_a_split_from_the_environment_beats_the_models_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"batchSize": 4, "traffic": {"weights": {"1.0": 90, "2.0": 10}}}')
    from_config = read_model_config(tmp_path).traffic
    ops = operations()
    ops.add_startup([spec("1.0", traffic=from_config), spec("2.0")], {})
    assert ops.registry.models["m"].split is not None and ops.registry.models["m"].split.weights == {"1.0": 90, "2.0": 10}
    ops = operations()
    ops.add_startup([spec("1.0", traffic=from_config), spec("2.0")], {"m": {"1.0": 50, "2.0": 50}})
    assert ops.registry.models["m"].split.weights == {"1.0": 50, "2.0": 50}  # type: ignore[union-attr]


@pytest.mark.parametrize("splits,fragment", [
    ({"other": {"1.0": 100}}, "TS_TRAFFIC_SPLIT names model other, which is not served"),
    ({"m": {"1.0": 50, "3.0": 50}}, "TS_TRAFFIC_SPLIT: model m: weights: version '3.0' is not served"),
    ({"m": {"1.0": 50, "2.0": 40}}, "sum to 90"),
])
def test_a_bad_start_up_split_stops_start_up_with_one_line(splits: dict[str, Any], fragment: str) -> None:
    with pytest.raises(StartupError, match=fragment):
        operations().add_startup([spec("1.0"), spec("2.0")], splits)


class FakeAdmin:
    """TorchServe's management API as restore() uses it: the registration of ``broken`` fails to start workers."""

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken
        self.calls: list[tuple[str, str]] = []

    async def register(self, file: str, name: str, version: str, *args: Any) -> None:
        self.calls.append(("register", name))
        if name in self.broken:
            raise ManagementError(500, f"Failed to start workers for model {name} version: {version}")

    async def set_default(self, name: str, version: str) -> None:
        self.calls.append(("set_default", name))

    async def wait_ready(self, name: str, version: str) -> None:
        self.calls.append(("wait_ready", name))


def restoring(broken: set[str]) -> tuple[Operations, FakeAdmin]:
    admin = FakeAdmin(broken)
    ops = operations()
    ops.admin = admin  # type: ignore[assignment]

    async def load_failure(name: str, version: str) -> str | None:
        return "RuntimeError: weights missing" if name in broken else None

    ops._load_failure = load_failure
    ops.add_startup([ModelSpec("good", "1.0", "good.mar", "h"), ModelSpec("broken", "1.0", "broken.mar", "h")], {})
    return ops, admin


async def test_a_model_that_cannot_load_is_kept_not_ready_with_its_reason_and_the_others_served(
        caplog: pytest.LogCaptureFixture) -> None:
    ops, admin = restoring({"broken"})
    with caplog.at_level(logging.INFO, logger="kserve_torchserve.management"):
        await ops.restore()
    good, broken = ops.registry.find("good"), ops.registry.find("broken")
    assert good is not None and good.ready and good.failure is None
    assert broken is not None and not broken.ready
    assert broken.failure == "its workers could not load: RuntimeError: weights missing"
    assert ("set_default", "broken") not in admin.calls and ("wait_ready", "broken") not in admin.calls
    (line,) = [r.getMessage() for r in caplog.records]  # one line, naming the model and the cause
    assert "model broken version 1.0 is not served" in line and "RuntimeError: weights missing" in line


async def test_restore_fails_when_no_model_can_load() -> None:
    ops, _ = restoring({"good", "broken"})
    with pytest.raises(ManagementError, match="no model could be loaded: good 1.0: its workers could not load"):
        await ops.restore()


async def test_a_failure_is_forgotten_when_the_model_loads_again() -> None:
    ops, admin = restoring({"broken"})
    await ops.restore()
    admin.broken.clear()  # fixed, e.g. a GPU that was busy at the first start
    await ops.restore()  # a TorchServe restart tries it again
    broken = ops.registry.find("broken")
    assert broken is not None and broken.ready and broken.failure is None


class UnregisteringAdmin(FakeAdmin):
    async def unregister(self, name: str, version: str) -> None:
        self.calls.append(("unregister", name))


def _late_reason_ops(failures: LoadFailures) -> tuple[Operations, UnregisteringAdmin]:
    admin = UnregisteringAdmin({"late"})
    ops = operations()
    ops.admin = admin  # type: ignore[assignment]
    ops._load_failure = failures.wait_reason
    return ops, admin


async def test_a_run_time_load_failure_answers_with_the_reason_that_arrives_after_torchserves_answer() -> None:
    """TorchServe's "Failed to start workers" can reach us before the worker's own lines do (a CI-like
    run saw it): the answer waits for them, as start-up does, then names the cause."""
    failures = LoadFailures()
    ops, admin = _late_reason_ops(failures)
    asyncio.get_running_loop().call_later(0.3, failures.feed, "2026-11-28T21:00:00,000 [INFO ] W-9001-late_1.0-stdout "
                                          "MODEL_LOG - Failed to load model late, exception cannot load: weights missing")
    with pytest.raises(ManagementError) as refused:
        await ops.activate(ops.registration(ModelSpec("late", "1.0", "late.mar", "h"), "1.0", "file:///m"))
    assert refused.value.status == 500
    assert refused.value.message == "Failed to start workers for model late version: 1.0: cannot load: weights missing"
    assert ("unregister", "late") in admin.calls  # nothing half-registered is left


async def test_a_run_time_load_failure_with_no_reason_in_the_log_keeps_torchserves_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_log, "REASON_WAIT_S", 0.2)
    ops, admin = _late_reason_ops(LoadFailures())
    with pytest.raises(ManagementError) as refused:
        await asyncio.wait_for(ops.activate(ops.registration(ModelSpec("late", "1.0", "late.mar", "h"), "1.0",
                                                             "file:///m")), 5)
    assert (refused.value.status, refused.value.message) == (500, "Failed to start workers for model late version: 1.0")
    assert ("unregister", "late") in admin.calls


class RecordingAdmin(FakeAdmin):
    def __init__(self) -> None:
        super().__init__(set())
        self.settings: dict[str, tuple[Any, ...]] = {}

    async def register(self, file: str, name: str, version: str, *args: Any) -> None:
        self.settings[name] = args
        await super().register(file, name, version, *args)


async def test_a_model_batched_in_front_is_registered_with_its_batch_size_and_no_delay() -> None:
    """Each TorchServe request is a batch already when we batch in front: TorchServe must not wait for more,
    and keeps the batch size (the handler reads it); our registration keeps the configured delay."""
    from kserve_torchserve.management.service import batched_in_front

    admin = RecordingAdmin()
    client: Any = type("Client", (), {"max_request_bytes": None})()
    for front, name, size in ((True, "front", 8), (False, "torchserve", 8), (True, "single", 1)):
        ts = parse_ts_env({"TS_BATCH_SIZE": str(size), "TS_MAX_BATCH_DELAY": "50"})
        ops = operations()
        ops._entry_for = lambda spec, ts=ts: model_entry(spec, ts, 120)  # type: ignore[misc]
        ops._make_model = lambda spec, timeout, version, ts=ts, front=front: TorchServeModel(  # type: ignore[misc]
            spec, client, timeout, 10, version, True,
            batched_in_front(model_entry(spec, ts, 120)) if front else None)
        ops.admin = admin  # type: ignore[assignment]
        ops.add_startup([ModelSpec(name, "1.0", f"{name}.mar", "h")], {})
        await ops.restore()
        r = ops.registrations[(name, "1.0")]
        assert (r.batch_size, r.max_batch_delay) == (size, 50)  # what we serve and describe
        assert (r.model.batcher is not None) == (name == "front")
    # register(file, name, version, batch_size, max_batch_delay, min_workers, max_workers, response_timeout)
    assert admin.settings["front"][:2] == (8, 0)
    assert admin.settings["torchserve"][:2] == (8, 50)
    assert admin.settings["single"][:2] == (1, 50)
    assert batched_in_front({"batchSize": 8, "maxBatchDelay": 5, "minWorkers": 2}) == (8, 5, 2)


async def test_scaling_a_model_batched_in_front_changes_the_batches_in_flight() -> None:
    """A worker takes one batch at a time, and one more waits in TorchServe: workers + 1 batches in flight."""
    class ScalingAdmin(FakeAdmin):
        async def scale(self, name: str, version: str, low: int, high: int, synchronous: bool) -> tuple[int, Any]:
            return 200, {}

    from kserve_torchserve.management.service import batched_in_front

    client: Any = type("Client", (), {"max_request_bytes": None})()
    ts = parse_ts_env({"TS_BATCH_SIZE": "8"})
    ops = operations()
    ops._entry_for = lambda spec: model_entry(spec, ts, 120)
    ops._make_model = lambda spec, timeout, version: TorchServeModel(
        spec, client, timeout, 10, version, True, batched_in_front(model_entry(spec, ts, 120)))
    ops.admin = ScalingAdmin(set())  # type: ignore[assignment]
    ops.add_startup([ModelSpec("m", "1.0", "m.mar", "h")], {})
    batcher = ops.registrations[("m", "1.0")].model.batcher
    assert batcher is not None and batcher.slots == 2
    await ops.scale("m", None, 3, 3, True)
    assert batcher.slots == 4
