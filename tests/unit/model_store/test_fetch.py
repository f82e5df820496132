"""storage.fetch for local URIs (no server needed) and its helpers."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.fetch import fetch, local_path, redact, s3_endpoint_from_kserve_env


def test_local_directory_is_used_in_place(tmp_path: Path) -> None:
    model = tmp_path / "models"
    model.mkdir()
    (model / "digits.mar").write_bytes(b"x")
    assert fetch(str(model), tmp_path / "download") == model
    assert fetch(f"file://{model}", tmp_path / "download") == model
    assert not (tmp_path / "download").exists()  # nothing copied


def test_pvc_maps_to_kserves_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "digits").mkdir(parents=True)
    monkeypatch.setenv("KSERVE_PVC_MOUNT_PATH", str(tmp_path))
    assert fetch("pvc://my-claim/models/digits", tmp_path / "download") == tmp_path / "models" / "digits"
    assert local_path("pvc://claim/a/b", {}) == Path("/mnt/pvc/a/b")


def test_local_storage_archive_is_unpacked(tmp_path: Path) -> None:
    src = tmp_path / "src.mar"
    src.write_bytes(b"mar")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="model-store/digits.mar")
    local = fetch(str(tmp_path / "model.tar.gz"), tmp_path / "download")
    assert (local / "model-store" / "digits.mar").read_bytes() == b"mar"


@pytest.mark.parametrize(
    "uri,message",
    [
        ("/no/such/path", "storage URI /no/such/path: /no/such/path does not exist"),
        ("foo://bucket/model", "storage URI foo://bucket/model: download failed: Exception: Cannot recognize storage "
                               "type for foo://bucket/model"),
    ],
)
def test_bad_uris_are_one_line_errors(tmp_path: Path, uri: str, message: str) -> None:
    with pytest.raises(StartupError) as info:
        fetch(uri, tmp_path / "download")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_redact_removes_userinfo_and_query() -> None:
    assert redact("https://user:pw@host/a/b?sig=s3cret") == "https://host/a/b"
    assert redact("s3://bucket/prefix") == "s3://bucket/prefix"
    assert redact("/local/path") == "/local/path"


def test_s3_endpoint_from_kserve_variables() -> None:
    assert s3_endpoint_from_kserve_env({"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}) == "http://minio:9000"
    assert s3_endpoint_from_kserve_env({"S3_ENDPOINT": "s3.example.com"}) == "https://s3.example.com"
    assert s3_endpoint_from_kserve_env({"S3_ENDPOINT": "x", "AWS_ENDPOINT_URL": "http://y"}) is None
    assert s3_endpoint_from_kserve_env({}) is None


def test_a_local_bomb_is_refused_naming_the_uri_once_and_the_entry(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 20 * 2**20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(StartupError) as info_:
        fetch(str(tmp_path / "model.tar.gz"), tmp_path / "download")
    message = str(info_.value)
    assert message.startswith(f"storage URI {tmp_path}/model.tar.gz: entry 'zeros.bin' expands "), message
    assert message.count(str(tmp_path)) == 1 and not (tmp_path / "download").exists()


def test_a_tar_over_the_cap_is_refused_before_unpacking(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tf:
        for name in ("a.bin", "b.bin"):
            info = tarfile.TarInfo(name)
            info.size = 4096
            tf.addfile(info, io.BytesIO(os.urandom(4096)))
    with pytest.raises(StartupError, match=r"would expand to more than 5000 bytes \(at entry 'b.bin'\)"):
        fetch(str(tmp_path / "model.tar.gz"), tmp_path / "download", max_unpacked_bytes=5000)
    assert not list((tmp_path / "download").rglob("*.bin"))
