"""Every child-process entry point starts under the module name its caller builds from ``__name__``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kserve_torchserve.backend import launcher
from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.archiver import check_eager
from kserve_torchserve.model_store.artifacts import EagerModel
from kserve_torchserve.model_store.fetch_child import fetch_in_child
from tests.helpers import ROOT


async def test_storage_child_fetches(tmp_path: Path) -> None:
    model = tmp_path / "models" / "digits"
    model.mkdir(parents=True)
    assert await fetch_in_child(str(model), tmp_path / "download", 2**20, "INFO") == model
    with pytest.raises(StartupError, match="does not exist"):
        await fetch_in_child(str(tmp_path / "missing"), tmp_path / "download", 2**20, "INFO")


def test_eager_probe_checks_a_model(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text((ROOT / "examples" / "eager" / "model.py").read_text())
    torch.save({"linear.weight": torch.zeros(10, 784), "linear.bias": torch.zeros(10)}, tmp_path / "model.pth")
    assert check_eager(EagerModel(tmp_path / "model.py", tmp_path / "model.pth")) == "MyModel"


def test_launcher_runs_torchserve() -> None:
    result = subprocess.run([sys.executable, "-m", launcher.__name__, "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--model-store" in result.stdout and "--ts-config" in result.stdout  # TorchServe's own usage
