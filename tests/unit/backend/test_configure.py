"""backend/configure.py: the files one TorchServe starts from, written into its layout."""

from __future__ import annotations

from pathlib import Path

import yaml

from kserve_torchserve.backend.configure import write_config
from kserve_torchserve.backend.process import Layout
from kserve_torchserve.config.settings import TorchServeOptions
from kserve_torchserve.model_store.build import ModelStore


def _read(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_the_users_properties_are_the_base_and_ours_win_on_security(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    user = storage / "config.properties"
    user.write_text("job_queue_size=7\ninference_address=http://0.0.0.0:8085\nallowed_urls=.*\n")
    layout = Layout(tmp_path / "work")
    props = write_config(TorchServeOptions(batch_size=4, log_level="DEBUG"), layout,
                         ModelStore(layout.model_store, (), user), storage, envelope=True)
    written = _read(layout.config_file)
    assert written == props
    assert written["job_queue_size"] == "7"  # the user's own setting is kept
    assert written["inference_address"].startswith("http://127.0.0.1:")  # loopback, never the user's 0.0.0.0
    assert written["allowed_urls"] != ".*"  # TorchServe fetches nothing by URL
    assert layout.model_store.is_dir() and 'level="debug"' in layout.log_config.read_text().lower()
    assert "metrics_config" not in written  # no declarations of the user's: TorchServe's own file


def test_a_metrics_yaml_beside_the_model_is_merged_into_torchserves(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "metrics.yaml").write_text(yaml.safe_dump(
        {"model_metrics": {"counter": [{"name": "CustomCounter", "unit": "count", "dimensions": ["ModelName"]}]}}))
    layout = Layout(tmp_path / "work")
    props = write_config(TorchServeOptions(), layout, ModelStore(layout.model_store, (), None), storage,
                         envelope=False)
    merged = yaml.safe_load(Path(props["metrics_config"]).read_text())
    names = {m["name"] for kind in merged["model_metrics"].values() for m in kind}
    assert {"CustomCounter", "HandlerTime", "PredictionTime"} <= names
