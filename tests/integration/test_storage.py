"""storage.fetch against real servers on loopback: moto (S3), a GCS emulator, an HTTP server."""

from __future__ import annotations

import io
import logging
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.build import build_model_store
from kserve_torchserve.model_store.fetch import fetch
from tests.helpers import Server, http
from tests.storage_servers import S3Server, gcs_server, http_server, s3_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3(digits: dict[str, Any]) -> Iterator[S3Server]:
    """A bucket with the digits example in KServe's layout, a single object, and a big object."""
    with s3_server() as server:
        client = server.client()
        client.create_bucket(Bucket="models")
        mar = (digits["store"] / "digits.mar").read_bytes()
        client.put_object(Bucket="models", Key="digits/config/config.properties", Body=b"job_queue_size=50\n")
        client.put_object(Bucket="models", Key="digits/model-store/digits.mar", Body=mar)
        client.put_object(Bucket="models", Key="single/digits.mar", Body=mar)
        client.put_object(Bucket="models", Key="big/blob.bin", Body=os.urandom(48 * 2**20))
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # fetch may set it: restore afterwards
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def test_s3_prefix_with_a_model_store_layout(s3_env: S3Server, tmp_path: Path) -> None:
    local = fetch("s3://models/digits", tmp_path / "download")
    assert (local / "model-store" / "digits.mar").is_file()
    assert (local / "config" / "config.properties").read_text() == "job_queue_size=50\n"
    store = build_model_store(local, tmp_path / "store")
    assert [s.name for s in store.specs] == ["digits"] and store.user_properties is not None


def test_s3_single_object(s3_env: S3Server, tmp_path: Path) -> None:
    local = fetch("s3://models/single/digits.mar", tmp_path / "download")
    assert [s.name for s in build_model_store(local, tmp_path / "store").specs] == ["digits"]


def test_s3_endpoint_and_use_https_as_kserve_documents(s3_env: S3Server, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("S3_ENDPOINT", s3_env.endpoint.removeprefix("http://"))
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    monkeypatch.setenv("S3_VERIFY_SSL", "0")
    local = fetch("s3://models/single/digits.mar", tmp_path / "download")
    assert local.name == "download" and (local / "digits.mar").is_file()


def test_s3_large_object_logs_progress_and_total(s3_env: S3Server, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kserve_torchserve.model_store.fetch")
    fetch("s3://models/big", tmp_path / "download", progress_interval_s=0.01)
    messages = [r.getMessage() for r in caplog.records]
    assert any("downloading s3://models/big:" in m and "of 48.0 MiB" in m for m in messages), messages
    assert any(m.startswith("downloaded s3://models/big: 48.0 MiB in") for m in messages)


@pytest.mark.parametrize(
    "uri,cause",
    [
        ("s3://no-such-bucket/model", "S3 resource 'no-such-bucket' not found"),
        ("s3://models/no/such/prefix", "No model found"),
    ],
)
def test_s3_missing_bucket_or_prefix(s3_env: S3Server, tmp_path: Path, uri: str, cause: str) -> None:
    with pytest.raises(StartupError) as info:
        fetch(uri, tmp_path / "download")
    message = str(info.value)
    assert message.startswith(f"storage URI {uri}: ") and cause in message and "\n" not in message


def test_s3_bad_credentials_fail_without_printing_them(s3_env: S3Server, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONG")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-print-this-secret")
    with pytest.raises(StartupError) as info:
        fetch("s3://models/digits", tmp_path / "download")
    message = str(info.value)
    assert "Forbidden" in message and "check the credentials" in message
    assert "do-not-print-this-secret" not in message


def test_s3_uri_serves_predictions_end_to_end(s3: S3Server, tmp_path: Path, digits: dict[str, Any]) -> None:
    server = Server("s3://models/digits", tmp_path, model_name="digits", env=s3.env())
    try:
        server.wait_ready()
        status, body = http("POST", f"{server.url}/v1/models/digits:predict", {"instances": digits["instances"][:2]})
        assert status == 200 and len(body["predictions"]) == 2
        log = server.log()
        assert "downloaded s3://models/digits:" in log and s3.secret_key not in log
    finally:
        server.stop()


def test_gcs_prefix_and_single_object(digits: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with gcs_server(tmp_path / "gcs-data") as host:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        client = gcs.Client(project="test", credentials=AnonymousCredentials())
        bucket = client.create_bucket("gcs-models")
        bucket.blob("digits/model-store/digits.mar").upload_from_filename(str(digits["store"] / "digits.mar"))
        local = fetch("gs://gcs-models/digits", tmp_path / "a")
        assert [s.name for s in build_model_store(local, tmp_path / "store-a").specs] == ["digits"]
        single = fetch("gs://gcs-models/digits/model-store/digits.mar", tmp_path / "b")
        assert [s.name for s in build_model_store(single, tmp_path / "store-b").specs] == ["digits"]
        with pytest.raises(StartupError, match="storage URI gs://no-such-bucket/x: "):
            fetch("gs://no-such-bucket/x", tmp_path / "c")


@pytest.fixture(scope="module")
def web(digits: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("web")
    mar = digits["store"] / "digits.mar"
    (root / "digits.mar").write_bytes(mar.read_bytes())
    with tarfile.open(root / "model.tar.gz", "w:gz") as tf:
        tf.add(mar, arcname="model-store/digits.mar")
    with zipfile.ZipFile(root / "model.zip", "w") as zf:
        zf.write(mar, arcname="digits.mar")
    with zipfile.ZipFile(root / "slip.zip", "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with tarfile.open(root / "slip.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with tarfile.open(root / "link.tgz", "w:gz") as tf:
        info = tarfile.TarInfo("passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with zipfile.ZipFile(root / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (8 * 2**20))  # 8 MiB of zeros: a few KiB packed
    with http_server(root) as url:
        yield url


@pytest.mark.parametrize("name,expected", [("digits.mar", "digits.mar"), ("model.tar.gz", "model-store/digits.mar"),
                                           ("model.zip", "digits.mar")])
def test_http_file_and_archives(web: str, tmp_path: Path, name: str, expected: str) -> None:
    local = fetch(f"{web}/{name}", tmp_path / "download")
    assert (local / expected).is_file()
    assert [s.name for s in build_model_store(local, tmp_path / "store").specs] == ["digits"]


@pytest.mark.parametrize(
    "name,cause",
    [
        ("slip.zip", "entry '../../escaped.txt' would be written outside the model directory"),
        ("slip.tar.gz", "entry '../escaped.txt' would be written outside the model directory"),
        ("link.tgz", "entry 'passwd' would be written outside the model directory or is not a plain file"),
        ("bomb.zip", "would expand to 8388608 bytes, over the cap of 1048576"),
        ("missing.mar", "HTTP resource not found"),
    ],
)
def test_http_bad_archives_are_refused(web: str, tmp_path: Path, name: str, cause: str) -> None:
    with pytest.raises(StartupError) as info:
        fetch(f"{web}/{name}", tmp_path / "download", max_unpacked_bytes=2**20)
    message = str(info.value)
    assert message.startswith(f"storage URI {web}/{name}: ") and cause in message, message
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_credentials_in_a_uri_are_never_printed(web: str, tmp_path: Path) -> None:
    secret_uri = web.replace("http://", "http://user:hunter2@") + "/missing.mar?sig=topsecret"
    with pytest.raises(StartupError) as info:
        fetch(secret_uri, tmp_path / "download")
    assert "hunter2" not in str(info.value) and "topsecret" not in str(info.value)
