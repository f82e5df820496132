from __future__ import annotations

from pathlib import Path

import yaml

from kserve_torchserve.config.metrics_yaml import merged_metrics_config
from tests.helpers import ROOT


def test_user_metrics_are_added_to_torchservers_defaults(tmp_path: Path) -> None:
    import ts

    default = Path(ts.__file__).parent / "configs" / "metrics.yaml"
    out = merged_metrics_config(default, ROOT / "examples" / "custom_metrics" / "metrics.yaml", tmp_path / "metrics.yaml")
    merged = yaml.safe_load(out.read_text())
    counters = [m["name"] for m in merged["model_metrics"]["counter"]]
    gauges = [m["name"] for m in merged["model_metrics"]["gauge"]]
    assert "CustomCounter" in counters and "CustomTimer" in gauges and "HandlerTime" in gauges
    assert "Requests2XX" in [m["name"] for m in merged["ts_metrics"]["counter"]]
