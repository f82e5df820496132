"""Azure blob storage against Azurite (the Azure Storage emulator, from npm), on loopback.

kserve_storage always talks to ``https://<account>.blob.core.windows.net``, so the
download runs in a child process with a private mount namespace whose /etc/hosts maps
that one name to 127.0.0.1 (the machine's own file is untouched), and Azurite serves
HTTPS on 127.0.0.1:443 with a certificate made here, trusted through SSL_CERT_FILE and KServe's
own CA bundle variables (CA_BUNDLE_CONFIGMAP_NAME / CA_BUNDLE_VOLUME_MOUNT_POINT).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from kserve_torchserve.model_store.build import build_model_store
from kserve_torchserve.model_store import fetch_child

pytestmark = pytest.mark.integration

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: it is in Azure's documentation).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = f"{ACCOUNT}.blob.core.windows.net"
AZURITE_DIR = Path.home() / ".cache" / "kserve_torchserve" / "azurite"


def _skip(reason: str) -> None:
    print(f"SKIPPED Azure storage test: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _azurite() -> Path:
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    if shutil.which("npm") is None:
        _skip("npm is not installed, so Azurite cannot be installed")
    AZURITE_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["npm", "install", "--prefix", str(AZURITE_DIR), "--no-audit", "--no-fund", "azurite@3"],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not binary.exists():
        _skip(f"Azurite does not install here: {result.stderr.strip()[-300:]}")
    return binary


def _namespaces_work() -> bool:
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, Any]) -> Iterator[dict[str, Path]]:
    if os.geteuid() != 0 or shutil.which("unshare") is None or not _namespaces_work():
        _skip("needs root and unshare (a private mount namespace) to map the Azure host name to loopback")
    if not _port_free(443):
        _skip("port 443 on 127.0.0.1 is taken")
    binary = _azurite()
    work = tmp_path_factory.mktemp("azure")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([str(binary), "--blobHost", "127.0.0.1", "--blobPort", "443", "--cert", str(cert),
                             "--key", str(key), "--location", str(work / "data"), "--skipApiVersionCheck",
                             "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while _port_free(443):
            if proc.poll() is not None or time.monotonic() > deadline:
                _skip("Azurite did not start")
            time.sleep(0.2)
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient(f"https://127.0.0.1:443/{ACCOUNT}", credential={
            "account_name": ACCOUNT, "account_key": ACCOUNT_KEY}, connection_verify=False)
        container = service.create_container("models")
        container.upload_blob("digits/model-store/digits.mar", (digits["store"] / "digits.mar").read_bytes())
        container.upload_blob("digits/config/config.properties", b"job_queue_size=20\n")
        (work / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOST}\n")
        (work / "ca").mkdir()
        shutil.copy(cert, work / "ca" / "cabundle.crt")
        # Python's SSL contexts (aiohttp's among them) read their CAs when created, so the
        # trust goes in through SSL_CERT_FILE from the start: the default CAs plus this one.
        import certifi

        (work / "trusted.pem").write_bytes(Path(certifi.where()).read_bytes() + b"\n" + cert.read_bytes())
        yield {"work": work, "hosts": work / "hosts", "ca": work / "ca", "trusted": work / "trusted.pem"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _sas() -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    return generate_container_sas(ACCOUNT, "models", account_key=ACCOUNT_KEY,
                                  permission=ContainerSasPermissions(read=True, list=True), expiry=expiry)


def _fetch_in_namespace(azurite: dict[str, Path], uri: str, out: Path) -> tuple[dict[str, str], str]:
    result = out.parent / f"{out.name}.json"
    env = {**os.environ, "CA_BUNDLE_CONFIGMAP_NAME": "azurite-ca", "CA_BUNDLE_VOLUME_MOUNT_POINT": str(azurite["ca"]),
           "SSL_CERT_FILE": str(azurite["trusted"]), "REQUESTS_CA_BUNDLE": str(azurite["trusted"])}
    command = (f'mount --bind {azurite["hosts"]} /etc/hosts && exec "$0" -m {fetch_child.__name__} "$1" "$2" '
               f'--result "$3"')
    run = subprocess.run(["unshare", "--mount", "sh", "-c", command, sys.executable, uri, str(out), str(result)],
                         env=env, capture_output=True, text=True, timeout=180)
    return json.loads(result.read_text()), run.stdout + run.stderr


def test_azure_blob_prefix_downloads_and_builds(azurite: dict[str, Path], tmp_path: Path) -> None:
    sas = _sas()
    answer, log = _fetch_in_namespace(azurite, f"https://{HOST}/models/digits?{sas}", tmp_path / "download")
    assert "path" in answer, answer
    local = Path(answer["path"])
    assert (local / "model-store" / "digits.mar").is_file()
    assert [s.name for s in build_model_store(local, tmp_path / "store").specs] == ["digits"]
    assert "sig=" not in log  # the SAS token never reaches the log


def test_azure_missing_container_is_a_clear_error(azurite: dict[str, Path], tmp_path: Path) -> None:
    answer, _ = _fetch_in_namespace(azurite, f"https://{HOST}/nothere/model?{_sas()}", tmp_path / "download")
    assert answer["error"].startswith(f"storage URI https://{HOST}/nothere/model: download failed")
    assert "sig=" not in answer["error"]
