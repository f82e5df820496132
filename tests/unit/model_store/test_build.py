from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.build import build_model_store
from tests.helpers import ASSETS, build_mar


@pytest.fixture(scope="module")
def sleepy_mar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mar(ASSETS / "sleepy_handler.py", "sleepy", tmp_path_factory.mktemp("mar"), version="2.0")


def test_mar_is_linked_and_described(sleepy_mar: Path, tmp_path: Path) -> None:
    store = build_model_store(sleepy_mar.parent, tmp_path / "store")
    assert [(s.name, s.version, s.mar_name) for s in store.specs] == [("sleepy", "2.0", "sleepy.mar")]
    assert store.specs[0].handler == "sleepy_handler.py"
    assert (tmp_path / "store" / "sleepy.mar").resolve() == sleepy_mar.resolve()
    assert store.user_properties is None


def test_single_model_takes_the_served_name(sleepy_mar: Path, tmp_path: Path) -> None:
    store = build_model_store(sleepy_mar, tmp_path / "store", model_name="isvc-name")
    assert store.specs[0].name == "isvc-name"


def test_kserve_layout_with_config(sleepy_mar: Path, tmp_path: Path) -> None:
    root = tmp_path / "storage"
    (root / "model-store").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "model-store" / "sleepy.mar").write_bytes(sleepy_mar.read_bytes())
    (root / "config" / "config.properties").write_text("job_queue_size=5\n")
    store = build_model_store(root, tmp_path / "store")
    assert [s.name for s in store.specs] == ["sleepy"]
    assert store.user_properties == root / "config" / "config.properties"


def test_no_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(StartupError, match=f"no model found in {tmp_path}: expected a .mar/.tar.gz archive"):
        build_model_store(tmp_path, tmp_path / "store")


def test_corrupt_mar_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.mar").write_bytes(b"not a zip")
    with pytest.raises(StartupError, match="bad.mar is not a valid zip archive"):
        build_model_store(tmp_path, tmp_path / "store")


def test_mar_without_manifest_names_the_file(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "empty.mar", "w") as zf:
        zf.writestr("handler.py", "")
    with pytest.raises(StartupError, match="empty.mar has no MAR-INF/MANIFEST.json"):
        build_model_store(tmp_path, tmp_path / "store")


def test_same_model_twice_is_refused(sleepy_mar: Path, tmp_path: Path) -> None:
    (tmp_path / "model-store").mkdir()
    (tmp_path / "a.mar").write_bytes(sleepy_mar.read_bytes())
    (tmp_path / "model-store" / "b.mar").write_bytes(sleepy_mar.read_bytes())
    with pytest.raises(StartupError, match="both hold model sleepy version 2.0"):
        build_model_store(tmp_path, tmp_path / "store")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("two")
    build_mar(ASSETS / "sleepy_handler.py", "resnet18", store)
    build_mar(ASSETS / "sleepy_handler.py", "densenet121", store)
    return store


def test_load_models_selects_and_renames_like_the_seed(two_models: Path, tmp_path: Path) -> None:
    store = build_model_store(two_models, tmp_path / "s", load_models="resnet=resnet18.mar,densenet=densenet121.mar")
    assert sorted((s.name, s.mar_name) for s in store.specs) == [
        ("densenet", "densenet121.mar"), ("resnet", "resnet18.mar")]


def test_load_models_all_and_plain_lists(two_models: Path, tmp_path: Path) -> None:
    assert {s.name for s in build_model_store(two_models, tmp_path / "a", load_models="all").specs} == {
        "resnet18", "densenet121"}
    assert [s.name for s in build_model_store(two_models, tmp_path / "b", load_models="densenet121").specs] == [
        "densenet121"]


def test_model_name_renames_a_single_selected_model_only_without_explicit_name(two_models: Path, tmp_path: Path) -> None:
    assert [s.name for s in build_model_store(two_models, tmp_path / "a", "isvc", "resnet18.mar").specs] == ["isvc"]
    assert [s.name for s in build_model_store(two_models, tmp_path / "b", "isvc", "r=resnet18.mar").specs] == ["r"]


def test_load_models_unknown_entry_lists_what_exists(two_models: Path, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"TS_LOAD_MODELS entry 'vgg.mar' matches no model; available: "
                                           r"densenet121.mar \(densenet121\), resnet18.mar \(resnet18\)"):
        build_model_store(two_models, tmp_path / "s", load_models="vgg.mar")
