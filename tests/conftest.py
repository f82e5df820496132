from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README's example, built by its own script: store dir, TorchScript file, held-out data."""
    out = tmp_path_factory.mktemp("digits")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_digits_example.py"), "--out", str(out)],
                   check=True, capture_output=True)
    heldout = json.loads((out / "heldout.json").read_text())
    return {"store": out / "model-store", "model_pt": out / "model.pt", "instances": heldout["instances"],
            "labels": heldout["labels"]}


@pytest.fixture(scope="session")
def digits_reference(digits: dict[str, Any]) -> list[list[float]]:
    """What the model computes in-process: the numbers the server must return."""
    import torch

    model = torch.jit.load(str(digits["model_pt"]))
    with torch.no_grad():
        return torch.softmax(model(torch.tensor(digits["instances"], dtype=torch.float32)), dim=1).tolist()
