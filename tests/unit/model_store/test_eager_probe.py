"""eager_probe.check_archive in-process: which archives' weights are unpickled, and how safely.

The refusals through the whole builder (and its child process) are in test_artifacts.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kserve_torchserve.model_store.eager_probe import check_archive


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _no_archive(root: Path, serialized: str, model_file: str | None = "model.py") -> Path:
    (root / "MAR-INF").mkdir(parents=True)
    model = {"modelName": "m", "serializedFile": serialized, "handler": "h.py"}
    if model_file:
        model["modelFile"] = model_file
    (root / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({"model": model}))
    return root


def test_weights_named_outside_the_archive_are_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pth")
    with pytest.raises(ValueError, match="its serializedFile must name a file inside the archive"):
        check_archive(_no_archive(tmp_path / "m", "../w.pth"))


def test_without_a_model_file_nothing_is_unpickled(tmp_path: Path) -> None:
    """No modelFile: BaseHandler loads a .pt with torch.jit.load (no Python unpickling), so we leave it."""
    model = _no_archive(tmp_path / "m", "w.pt", model_file=None)
    torch.save({"x": RunsCode(tmp_path / "ran")}, model / "w.pt")
    check_archive(model)
    assert not (tmp_path / "ran").exists()


def test_files_that_are_no_pickle_are_left_to_the_handler(tmp_path: Path) -> None:
    model = _no_archive(tmp_path / "m", "w.safetensors")
    (model / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    check_archive(model)


def test_code_running_weights_are_refused_and_never_run(tmp_path: Path) -> None:
    model = _no_archive(tmp_path / "m", "w.pth")
    torch.save({"w": torch.zeros(1), "x": RunsCode(tmp_path / "ran")}, model / "w.pth")
    with pytest.raises(ValueError, match=r"m: its serialized file w.pth is more than a state dict of tensors"):
        check_archive(model)
    assert not (tmp_path / "ran").exists()
