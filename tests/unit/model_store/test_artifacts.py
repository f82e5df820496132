"""Every artifact kind the runtime description names -> the model store, and every bad one -> a clear error."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.build import build_model_store
from tests.helpers import ASSETS, ROOT, build_mar

EAGER_MODEL = (ROOT / "examples" / "eager" / "model.py").read_text()


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def scripted(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Tiny()).save(str(path))
    return path


def eager_dir(path: Path, model_py: str = EAGER_MODEL, state: object = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.py").write_text(model_py)
    torch.save(state if state is not None else {"linear.weight": torch.zeros(10, 784), "linear.bias": torch.zeros(10)},
               path / "model.pth")
    return path


def mar_names(mar: Path) -> set[str]:
    with zipfile.ZipFile(mar) as zf:
        return set(zf.namelist())


def manifest(mar: Path) -> dict[str, object]:
    with zipfile.ZipFile(mar) as zf:
        return json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]  # type: ignore[no-any-return]


def test_torchscript_pth_is_detected_by_content_and_archived_as_pt(tmp_path: Path) -> None:
    scripted(tmp_path / "s" / "weights.pth")
    (tmp_path / "s" / "index_to_name.json").write_text("{}")
    store = build_model_store(tmp_path / "s", tmp_path / "store", model_name="m")
    (spec,) = store.specs
    assert (spec.name, spec.mar_name, spec.handler) == ("m", "m.mar", "tensor_handler.py")
    assert {"weights.pt", "tensor_handler.py", "index_to_name.json"} <= mar_names(tmp_path / "store" / "m.mar")


def test_handler_beside_the_model_and_per_model_config(tmp_path: Path) -> None:
    src = tmp_path / "s"
    scripted(src / "model.pt")
    (src / "handler.py").write_text("from ts.torch_handler.base_handler import BaseHandler\n")
    (src / "model-config.yaml").write_text("batchSize: 4\nmaxBatchDelay: 7\nminWorkers: 2\nmaxWorkers: 3\n")
    (src / "config.json").write_text(json.dumps({"batchSize": 8, "responseTimeout": 9}))
    (spec,) = build_model_store(src, tmp_path / "store").specs
    assert spec.name == "model" and spec.handler == "handler.py"
    assert (spec.batch_size, spec.max_batch_delay, spec.min_workers, spec.max_workers, spec.response_timeout) == (
        8, 7, 2, 3, 9)  # config.json wins where both speak
    names = mar_names(tmp_path / "store" / "model.mar")
    assert {"handler.py", "model-config.yaml", "model.pt"} <= names and "config.json" not in names


def test_handler_named_in_config(tmp_path: Path) -> None:
    src = tmp_path / "s"
    scripted(src / "model.pt")
    (src / "config.json").write_text(json.dumps({"handler": "image_classifier"}))
    (spec,) = build_model_store(src, tmp_path / "store").specs
    assert spec.handler == "image_classifier"
    assert manifest(tmp_path / "store" / "model.mar")["handler"] == "image_classifier"


def test_eager_model_is_checked_and_archived(tmp_path: Path) -> None:
    (spec,) = build_model_store(eager_dir(tmp_path / "e"), tmp_path / "store", model_name="mnist").specs
    assert spec.name == "mnist"
    model = manifest(tmp_path / "store" / "mnist.mar")
    assert model["modelFile"] == "model.py" and model["serializedFile"] == "model.pth"


@pytest.mark.parametrize(
    "model_py,state,message",
    [
        (EAGER_MODEL, None, None),
        ("import torch.nn as nn\n", None, "must define exactly one torch.nn.Module class, found none"),
        (EAGER_MODEL + "\nclass Other(nn.Module):\n    pass\n", None,
         "must define exactly one torch.nn.Module class, found MyModel, Other"),
        (EAGER_MODEL + "\nclass Helper:\n    pass\n", None, "defines other classes too (Helper)"),
        (EAGER_MODEL, {"linear.weight": torch.zeros(3, 3)}, "does not fit MyModel in model.py"),
        (EAGER_MODEL, {"weights": [1, 2]}, "is not a state dict of tensors"),
    ],
)
def test_eager_errors_name_the_file_and_the_fix(tmp_path: Path, model_py: str, state: object,
                                               message: str | None) -> None:
    src = eager_dir(tmp_path / "e", model_py, state)
    if message is None:
        assert build_model_store(src, tmp_path / "store").specs
        return
    with pytest.raises(StartupError) as info:
        build_model_store(src, tmp_path / "store")
    assert message in str(info.value)


def test_pickled_whole_module_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "e"
    src.mkdir()
    (src / "model.py").write_text(EAGER_MODEL)
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("model", src / "model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    try:
        spec.loader.exec_module(module)
        torch.save(module.MyModel(), src / "model.pth")  # the whole module, pickled
    finally:
        del sys.modules["model"]
    with pytest.raises(StartupError, match="a pickled whole model\\?\\): save torch.save\\(model.state_dict"):
        build_model_store(src, tmp_path / "store")


def test_state_dict_without_model_py_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    torch.save({"w": torch.zeros(1)}, src / "model.pth")
    with pytest.raises(StartupError, match="is not TorchScript, so it needs model.py beside it"):
        build_model_store(src, tmp_path / "store")


def test_unknown_files_only(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(StartupError, match="no model found"):
        build_model_store(tmp_path, tmp_path / "store")


def test_tgz_and_no_archive_dirs_are_served_as_they_are(tmp_path: Path) -> None:
    src = tmp_path / "s"
    for fmt, name in (("tgz", "packed"), ("no-archive", "unpacked")):
        build_mar(ASSETS / "sleepy_handler.py", name, src, version="2.0", archive_format=fmt)
    store = build_model_store(src, tmp_path / "store")
    assert sorted((s.name, s.version, s.mar_name) for s in store.specs) == [
        ("packed", "2.0", "packed.tar.gz"), ("unpacked", "2.0", "unpacked")]


def test_one_model_per_subdirectory(tmp_path: Path) -> None:
    scripted(tmp_path / "s" / "first" / "model.pt")
    eager_dir(tmp_path / "s" / "second")
    build_mar(ASSETS / "sleepy_handler.py", "third", tmp_path / "s")
    store = build_model_store(tmp_path / "s", tmp_path / "store")
    assert sorted(s.name for s in store.specs) == ["first", "second", "third"]


def test_kserve_model_snapshot_selects_renames_and_configures(tmp_path: Path) -> None:
    root = tmp_path / "s"
    build_mar(ASSETS / "sleepy_handler.py", "mnist", root / "model-store")
    build_mar(ASSETS / "sleepy_handler.py", "other", root / "model-store")
    (root / "config").mkdir()
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {"digits": {"2.0": {
        "defaultVersion": True, "marName": "mnist.mar", "minWorkers": 1, "maxWorkers": 5,
        "batchSize": 4, "maxBatchDelay": 10, "responseTimeout": 60}}}}
    (root / "config" / "config.properties").write_text(
        "inference_address=http://0.0.0.0:8085\nmodel_store=/mnt/models/model-store\n"
        f"model_snapshot={json.dumps(snapshot)}\n")
    (spec,) = build_model_store(root, tmp_path / "store").specs
    assert (spec.name, spec.version, spec.mar_name) == ("digits", "2.0", "mnist.mar")
    assert (spec.batch_size, spec.max_batch_delay, spec.max_workers, spec.response_timeout) == (4, 10, 5, 60)


def _zip_with(path: Path, name: str, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": "x", "handler": "h.py"}}))
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd" if symlink else "evil")
    return path


@pytest.mark.parametrize("entry,symlink", [("../evil.py", False), ("/tmp/evil.py", False), ("a/../../evil", False),
                                           ("link", True)])
def test_zip_slip_is_refused(tmp_path: Path, entry: str, symlink: bool) -> None:
    _zip_with(tmp_path / "x.mar", entry, symlink)
    with pytest.raises(StartupError, match="would be written outside the model directory"):
        build_model_store(tmp_path, tmp_path / "store")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_tar_slip_is_refused(tmp_path: Path, kind: str) -> None:
    with tarfile.open(tmp_path / "x.tar.gz", "w:gz") as tf:
        data = json.dumps({"model": {"modelName": "x"}}).encode()
        info = tarfile.TarInfo("x/MAR-INF/MANIFEST.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        bad = tarfile.TarInfo({"dotdot": "../evil", "absolute": "/evil"}.get(kind, "x/link"))
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(bad, io.BytesIO(b""))
    with pytest.raises(StartupError, match="would be written outside the model directory or is not a plain file"):
        build_model_store(tmp_path, tmp_path / "store")
    assert not os.path.exists(tmp_path.parent / "evil")


# -- weights that would run code when unpickled (eager_probe.check_archive) -------------------

class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _eager_archive(out: Path, weights: Path, fmt: str, name: str = "eager") -> Path:
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    out.mkdir(parents=True, exist_ok=True)
    (weights.parent / "model.py").write_text(EAGER_MODEL)
    generate_model_archive(ModelArchiverConfig(
        model_name=name, version="1.0", model_file=str(weights.parent / "model.py"), serialized_file=str(weights),
        handler="image_classifier", export_path=str(out), force=True, archive_format=fmt))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive"])
def test_code_running_weights_in_an_eager_archive_are_refused(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "src").mkdir()
    torch.save({"linear.weight": torch.zeros(1), "x": RunsCode(marker)}, tmp_path / "src" / "w.pth")
    store = _eager_archive(tmp_path / "store", tmp_path / "src" / "w.pth", fmt)
    with pytest.raises(StartupError, match=r"its serialized file w.pth is more than a state dict of tensors "
                                           r"\(torch.load\(weights_only=True\) refuses exec\)"):
        build_model_store(store, tmp_path / "built")
    assert not marker.exists()


def test_eager_archives_with_plain_weights_pass(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    torch.save({"linear.weight": torch.zeros(10, 784), "linear.bias": torch.zeros(10)}, tmp_path / "a" / "w.pth")
    _eager_archive(tmp_path / "store", tmp_path / "a" / "w.pth", "default")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "w.safetensors").write_bytes(b"{}not a pickle")  # left to its handler
    _eager_archive(tmp_path / "store", tmp_path / "b" / "w.safetensors", "default", name="other")
    assert sorted(s.name for s in build_model_store(tmp_path / "store", tmp_path / "built").specs) == ["eager", "other"]


def test_code_running_legacy_format_weights_are_refused(tmp_path: Path) -> None:
    """torch's pre-1.6 (non-zip) format is a plain pickle stream: refused the same way."""
    marker = tmp_path / "ran"
    src = eager_dir(tmp_path / "e")
    torch.save({"linear.weight": torch.zeros(1), "x": RunsCode(marker)}, src / "model.pth",
               _use_new_zipfile_serialization=False)
    with pytest.raises(StartupError, match=r"model.pth is not a state dict of tensors \(torch.load\(weights_only=True\) "
                                           r"refuses exec"):
        build_model_store(src, tmp_path / "store")
    assert not marker.exists()


def test_an_oversized_manifest_is_refused_unread(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "x.mar", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": "x"}, "pad": " " * 2**21}))
    with pytest.raises(StartupError, match=r"MAR-INF/MANIFEST.json is \d+ bytes, over the 1048576 a manifest"):
        build_model_store(tmp_path, tmp_path / "store")


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive"])
def test_open_member_reads_a_file_of_any_archive_format(tmp_path: Path, fmt: str) -> None:
    from kserve_torchserve.model_store.artifacts import open_member, read_archive

    archive = build_mar(ASSETS / "sleepy_handler.py", "m", tmp_path / "store", archive_format=fmt)

    with open_member(archive, "sleepy_handler.py") as member:
        assert member is not None and b"def" in member.read()
    with open_member(archive, "missing.bin") as member:
        assert member is None
    assert read_archive(archive).pickled_weights is None  # no modelFile: nothing BaseHandler unpickles
