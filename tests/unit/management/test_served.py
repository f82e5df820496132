"""Per-request routing, the guarded canary and shadow copies, on fake versions."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Mapping

import pytest
from prometheus_client import REGISTRY

from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.management.served import SHADOW_IN_FLIGHT, GuardWindow, ServedModel
from kserve_torchserve.management.traffic import Guard, Split
from kserve_torchserve.serving.model import TorchServeModel


class Client:
    """Version "bad" fails with a 500; version "slow" waits for ``release``."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: list[str] = []

    async def predict(self, model: str, version: str | None, row: Mapping[str, bytes], timeout: float) -> bytes:
        self.calls.append(str(version))
        if version == "bad":
            raise UpstreamError(500, f"model {model} failed")
        if version == "slow":
            await self.release.wait()
        return f'"{version}"'.encode()


def served(client: Client, *versions: str) -> ServedModel:
    model = ServedModel("m", random.Random(0).random)
    for v in versions:
        version = TorchServeModel(ModelSpec("m", v, f"{v}.mar", "h"), client, 10, 10,  # type: ignore[arg-type]
                                  per_request=False)
        version.ready = True
        model.versions[v] = version
    model.default = versions[0]
    return model


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_guard_window_trips_only_past_the_minimum_and_the_rate() -> None:
    now = [0.0]
    window = GuardWindow(Guard("c", max_error_rate=0.2, min_requests=10, window_s=60), clock=lambda: now[0])
    assert all(window.record(True) is None for _ in range(9))  # under min_requests
    assert window.record(True) == 1.0
    window = GuardWindow(Guard("c", max_error_rate=0.2, min_requests=10, window_s=60), clock=lambda: now[0])
    for i in range(100):
        assert window.record(i % 10 == 0) is None  # 10 %: under the limit
    now[0] = 1000.0  # the old answers leave the window
    assert all(window.record(False) is None for _ in range(9))


async def test_a_failing_canary_is_rolled_back_once_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    model = served(Client(), "good", "bad")
    model.set_split(Split.parse({"weights": {"good": 50, "bad": 50},
                                 "guard": {"version": "bad", "max_error_rate": 0.05, "min_requests": 5}},
                                {"good", "bad"}))
    before = metric("kserve_torchserve_canary_rollbacks_total", model_name="m", model_version="bad")
    failures = 0
    with caplog.at_level(logging.WARNING, logger="kserve_torchserve.management.served"):
        for _ in range(200):
            try:
                await model.predict({"instances": [1]})
            except UpstreamError:
                failures += 1
    assert failures == 5  # the canary's errors until the guard's minimum, then none
    assert model.split is not None and model.split.rolled_back is not None
    assert model.split.rolled_back.version == "bad" and model.split.rolled_back.error_rate == 1.0
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "rolled back" in caplog.records[0].message
    assert metric("kserve_torchserve_canary_rollbacks_total", model_name="m", model_version="bad") == before + 1
    assert model.stats["bad"]["5xx"] == 5 and model.stats["good"]["2xx"] == 195
    model.set_split(Split.parse({"weights": {"good": 50, "bad": 50}}, {"good", "bad"}))  # a new PUT clears it
    assert model.split is not None and model.split.rolled_back is None


async def test_shadow_copies_never_delay_the_answer_and_are_dropped_when_behind() -> None:
    client = Client()
    model = served(client, "main", "slow")
    model.set_split(Split.parse({"weights": {"main": 100}, "shadow": {"slow": 100}}, {"main", "slow"}))
    dropped = metric("kserve_torchserve_shadow_copies_total", model_name="m", model_version="slow", result="dropped")
    headers: dict[str, str] = {}
    for _ in range(10):
        assert await asyncio.wait_for(model.predict({"instances": [1]}, {}, headers), 1) == {"predictions": ["main"]}
    assert headers == {"x-model-version": "main"}
    assert model.stats["slow"]["shadow sent"] == SHADOW_IN_FLIGHT
    assert model.stats["slow"]["shadow dropped"] == 10 - SHADOW_IN_FLIGHT
    assert metric("kserve_torchserve_shadow_copies_total", model_name="m", model_version="slow",
                  result="dropped") == dropped + 10 - SHADOW_IN_FLIGHT
    client.release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert model.stats["slow"]["2xx"] == 0  # shadows are not the caller's answers
    assert metric("kserve_torchserve_version_requests_total", model_name="m", model_version="slow",
                  traffic="shadow", outcome="2xx") >= SHADOW_IN_FLIGHT


async def test_a_failing_shadow_fails_no_caller() -> None:
    model = served(Client(), "main", "bad")
    model.set_split(Split.parse({"weights": {"main": 100}, "shadow": {"bad": 100}}, {"main", "bad"}))
    assert await model.predict({"instances": [1]}) == {"predictions": ["main"]}
    for _ in range(20):
        await asyncio.sleep(0)
    assert model.stats["bad"]["shadow failed"] == 1
