"""Start-up: defaults among versions, and traffic splits from TS_TRAFFIC_SPLIT or a model's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kserve_torchserve.config.model_config import ModelSpec, read_model_config
from kserve_torchserve.config.properties import model_entry
from kserve_torchserve.config.settings import parse_ts_env
from kserve_torchserve.errors import StartupError
from kserve_torchserve.management.operations import Limits, Operations
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
