"""A model added at run time: built by the start-up builder, versioned as asked, linked under its own name."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.archiver import with_version
from kserve_torchserve.model_store.artifacts import read_archive
from kserve_torchserve.model_store.stage import discard, stage
from tests.helpers import ASSETS, build_mar


@pytest.mark.parametrize("archive_format", ["default", "tgz", "no-archive"])
def test_with_version_rewrites_only_the_manifest(tmp_path: Path, archive_format: str) -> None:
    original = build_mar(ASSETS / "version_handler.py", "v", tmp_path / "src", archive_format=archive_format)
    copy = with_version(original, "3.1", tmp_path / "out")
    assert read_archive(copy).version == "3.1" and read_archive(original).version == "1.0"
    assert read_archive(copy).name == "v" and read_archive(copy).handler == read_archive(original).handler
    if archive_format == "default":
        with zipfile.ZipFile(original) as a, zipfile.ZipFile(copy) as b:
            assert a.namelist() == b.namelist()
            assert a.read("version_handler.py") == b.read("version_handler.py")
    elif archive_format == "tgz":
        with tarfile.open(original) as a, tarfile.open(copy) as b:
            assert a.getnames() == b.getnames()
    else:
        assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in original.iterdir())
        assert json.loads((original / "MAR-INF" / "MANIFEST.json").read_text())["model"]["modelVersion"] == "1.0"


def test_stage_links_a_unique_entry_and_discard_removes_it(tmp_path: Path) -> None:
    build_mar(ASSETS / "version_handler.py", "v", tmp_path / "fetched")
    store = tmp_path / "store"
    store.mkdir()
    first = stage(tmp_path / "fetched", tmp_path / "w1", store, "renamed", "2.0")
    second = stage(tmp_path / "fetched", tmp_path / "w2", store, "renamed", "3.0")
    assert (first.spec.name, first.spec.version, first.ts_version) == ("renamed", "2.0", "2.0")
    assert first.link != second.link and first.link.parent == store and first.link.name.endswith(".mar")
    assert ".." not in first.link.name  # TorchServe refuses urls holding ".."
    assert read_archive(first.link.resolve()).version == "2.0"
    discard(first)
    assert not first.link.exists() and not (tmp_path / "w1").exists() and second.link.exists()


def test_stage_keeps_the_artifacts_version_and_can_register_it_apart(tmp_path: Path) -> None:
    build_mar(ASSETS / "version_handler.py", "v", tmp_path / "fetched", version="4.0")
    staged = stage(tmp_path / "fetched", tmp_path / "w", tmp_path, None, None, lambda v: f"{v}-r1")
    assert (staged.spec.version, staged.ts_version) == ("4.0", "4.0-r1")
    assert read_archive(staged.link.resolve()).version == "4.0-r1"


def test_one_model_per_registration(tmp_path: Path) -> None:
    build_mar(ASSETS / "version_handler.py", "a", tmp_path / "fetched")
    build_mar(ASSETS / "version_handler.py", "b", tmp_path / "fetched")
    with pytest.raises(StartupError, match="holds 2 models"):
        stage(tmp_path / "fetched", tmp_path / "w", tmp_path, None, None)
