"""Issue 16, rows 15-17: hostile archives, code-running pickles, and TorchServe's own ports.

Every hostile artifact is generated here at run time. Each goes through both doors: start-up
(``fetch`` + ``build_model_store``, exactly what ``server.startup`` runs on ``--storage_uri``)
and run-time registration (``POST /models`` on a real server, which fetches in a child process
and builds with the same code). One server serves the module: it also answers the port checks.
"""

from __future__ import annotations

import io
import ipaddress
import json
import struct
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import psutil
import pytest
import requests
import torch
from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive

from kserve_torchserve.config.properties import parse_properties
from kserve_torchserve.errors import StartupError
from kserve_torchserve.model_store.build import build_model_store
from kserve_torchserve.model_store.fetch import fetch
from tests.helpers import ASSETS, ROOT, Server, build_mar, running
from tests.storage_servers import RecordingServer, recording_http_server

pytestmark = pytest.mark.integration

KEY = "payloads-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
BOUND_S = 30.0  # "bounded time": each refusal here takes well under a second; 30 s only catches a hang or a full unpack
ESCAPED = "h16-escaped.txt"  # what a slipping entry would write
BOMB_BYTES = 24 * 2**20  # a 1000:1 bomb: 24 MiB of zeros packs into ~24 KiB (the ratio limit starts at 16 MiB)
MANY_ENTRIES = 100_000


# -- hostile artifacts ------------------------------------------------------------------------

def _manifest(name: str, **model: str) -> str:
    return json.dumps({"model": {"modelName": name, "modelVersion": "1.0", "handler": "h.py", **model}})


def _zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], mar: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if mar:
            zf.writestr("MAR-INF/MANIFEST.json", _manifest(path.stem))
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, 0o120777 << 16  # a unix symlink
    return info


def _many_entries_zip(path: Path, count: int) -> Path:
    """A valid zip of ``count`` empty files, written directly (zipfile takes 100 times longer for 100,000)."""
    local, central = bytearray(), bytearray()
    for i in range(count):
        name = f"f{i}".encode()
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0, 0, 0, 0,
                               0o100644 << 16, len(local)) + name
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
    start, size = len(local), len(central)  # over 65,535 entries: the zip64 end records
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, start + size, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, size, start, 0)
    path.write_bytes(bytes(local + central) + end64 + locator + end)
    return path


def _tar(path: Path, kind: str, mar: bool = False) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        if mar:
            data = _manifest(path.name.split(".")[0]).encode()
            info = tarfile.TarInfo("m/MAR-INF/MANIFEST.json")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if kind == "slip":
            info = tarfile.TarInfo(f"../../{ESCAPED}")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
        elif kind in ("symlink", "hardlink"):
            info = tarfile.TarInfo("passwd")
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
        elif kind == "bomb":
            info = tarfile.TarInfo("zeros.bin")
            info.size = BOMB_BYTES
            tf.addfile(info, io.BytesIO(bytes(BOMB_BYTES)))
    return path


class _RunsCode:
    """Pickles to a call of exec(): unpickling it without weights_only writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('the pickle ran')",)


def _evil_state(marker: Path) -> dict[str, Any]:
    return {"linear.weight": torch.zeros(10, 784), "linear.bias": torch.zeros(10), "payload": _RunsCode(marker)}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every hostile artifact, each where a storage URI or a registration url can name it."""
    root = tmp_path_factory.mktemp("hostile")
    outside = root / "outside"  # where a slipping entry would land (absolute entries point here too)
    outside.mkdir()
    files = root / "files"
    files.mkdir()
    zeros = bytes(BOMB_BYTES)
    found = {
        "zip-slip": _zip(files / "slip.zip", [(f"../../{ESCAPED}", b"x"), (f"{outside}/{ESCAPED}", b"x")]),
        "tar-slip": _tar(files / "slip.tar.gz", "slip"),
        "zip-symlink": _zip(files / "symlink.zip", [(_symlink_info("passwd"), b"/etc/passwd")]),
        "tar-symlink": _tar(files / "symlink.tgz", "symlink"),
        "tar-hardlink": _tar(files / "hardlink.tgz", "hardlink"),
        "zip-bomb": _zip(files / "bomb.zip", [("zeros.bin", zeros)]),
        "tar-bomb": _tar(files / "bomb.tar.gz", "bomb"),
        "zip-many": _many_entries_zip(files / "many.zip", MANY_ENTRIES),
        "mar-slip": _zip(files / "slipmar.mar", [(f"../../{ESCAPED}", b"x")], mar=True),
        "mar-symlink": _zip(files / "linkmar.mar", [(_symlink_info("passwd"), b"/etc/passwd")], mar=True),
        "mar-bomb": _zip(files / "bombmar.mar", [("zeros.bin", zeros)], mar=True),
        "tgz-mar-bomb": _tar(files / "bombtgz.tar.gz", "bomb", mar=True),
    }
    marker = root / "pickle-ran.txt"
    eager = files / "eager"  # eager mode: model.py + a pickled "state dict" (.pt and torch's legacy format:
    eager.mkdir()            # tests/unit/model_store/test_artifacts.py)
    (eager / "model.py").write_text((ROOT / "examples" / "eager" / "model.py").read_text())
    torch.save(_evil_state(marker), eager / "model.pth")
    found["evil-pth"] = eager
    build = root / "mar-build"
    build.mkdir()
    torch.save(_evil_state(marker), build / "weights.pth")
    generate_model_archive(ModelArchiverConfig(
        model_name="evilmar", version="1.0", model_file=str(eager / "model.py"),
        serialized_file=str(build / "weights.pth"), handler="image_classifier", export_path=str(files), force=True))
    found["evil-mar"] = files / "evilmar.mar"
    return {"root": root, "files": files, "outside": outside, "marker": marker, **found}


def _nothing_escaped(hostile: dict[str, Any], *roots: Path) -> None:
    for root in (hostile["root"].parent, *roots):
        assert not list(root.rglob(ESCAPED)), f"a slipping entry was written under {root}"
    assert not (Path("/tmp") / ESCAPED).exists()


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# (artifact, what the refusal must say: the entry by name, and why)
ARCHIVE_CASES = [
    ("zip-slip", f"entry '../../{ESCAPED}' would be written outside the model directory"),
    ("tar-slip", f"entry '../../{ESCAPED}' would be written outside the model directory"),
    ("zip-symlink", "entry 'passwd' would be written outside the model directory (absolute path, '..' or a link)"),
    ("tar-symlink", "entry 'passwd' would be written outside the model directory or is not a plain file"),
    ("tar-hardlink", "entry 'passwd' would be written outside the model directory or is not a plain file"),
    ("zip-bomb", "entry 'zeros.bin' expands"),
    ("tar-bomb", "entry 'zeros.bin' expands"),
    ("zip-many", "more than 10000 entries (entry 'f10000' is one too many)"),
    ("mar-slip", f"entry '../../{ESCAPED}' would be written outside the model directory"),
    ("mar-symlink", "entry 'passwd' would be written outside the model directory"),
    ("mar-bomb", "entry 'zeros.bin' expands"),
    ("tgz-mar-bomb", "entry 'zeros.bin' expands"),
]


# -- row 15 and 16 at start-up: the storage URI names the artifact ---------------------------

def _startup(uri: str, tmp: Path) -> str:
    """What start-up does with --storage_uri (server.startup: fetch, then build the model store)."""
    with pytest.raises(StartupError) as info:
        build_model_store(fetch(uri, tmp / "download"), tmp / "store")
    return str(info.value)


@pytest.mark.parametrize("artifact,cause", ARCHIVE_CASES)
def test_hostile_archive_is_refused_at_startup(hostile: dict[str, Any], tmp_path: Path, artifact: str,
                                               cause: str) -> None:
    message, took = _timed(lambda: _startup(str(hostile[artifact]), tmp_path))
    assert cause in message and "\n" not in message and len(message) < 600, message
    assert took < BOUND_S, f"refusing {artifact} took {took:.1f}s"
    assert not (tmp_path / "download").exists() or len(list((tmp_path / "download").rglob("*"))) < 10
    _nothing_escaped(hostile, tmp_path)


# Bare weights (model.py + a code-running .pth/.pt) at start-up: tests/unit/model_store/test_artifacts.py
# (the same build_model_store and probe child; refused there already before issue 16).
def test_code_running_pickle_is_refused_at_startup(hostile: dict[str, Any], tmp_path: Path) -> None:
    message = _startup(str(hostile["evil-mar"]), tmp_path)
    assert "its serialized file weights.pth" in message and "\n" not in message, message
    assert not hostile["marker"].exists(), "unpickling ran the payload's code"


def test_the_real_server_exits_at_startup_naming_the_entry(hostile: dict[str, Any], tmp_path: Path) -> None:
    """The same refusal from the real program: exit 1, one line, before TorchServe starts."""
    server = Server(hostile["mar-bomb"], tmp_path)
    try:
        code = server.wait_exit(timeout=60)
    finally:
        server.stop()
    log = server.log()
    lines = [line for line in log.splitlines() if "start-up failed" in line]
    assert code == 1 and len(lines) == 1 and "entry 'zeros.bin' expands" in lines[0], log[-2000:]
    assert "Traceback" not in log


# -- the same through run-time registration ----------------------------------------------------

@pytest.fixture(scope="module")
def server(hostile: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("payloads-store")
    build_mar(ASSETS / "version_handler.py", "ok", store)
    with running(Server(store, tmp_path_factory.mktemp("payloads-server"), args=["--startup_timeout", "60"],
                        env={"TS_ENABLE_MODEL_API": "true", "TS_MODEL_API_KEY": KEY,
                             "TS_ALLOWED_URLS": f"{hostile['files']}/.*"})) as srv:
        yield srv


def _register(server: Server, url: str) -> tuple[int, Any]:
    response = requests.post(f"{server.url}/models", params={"url": url, "synchronous": "true"}, headers=AUTH,
                             timeout=120)
    return response.status_code, response.json()


@pytest.mark.parametrize("artifact,cause", [case for case in ARCHIVE_CASES if case[0] in (
    "zip-slip", "tar-hardlink", "zip-bomb", "zip-many", "mar-slip", "mar-bomb")])
def test_hostile_archive_is_refused_at_registration(server: Server, hostile: dict[str, Any], artifact: str,
                                                    cause: str) -> None:
    (status, body), took = _timed(lambda: _register(server, str(hostile[artifact])))
    assert status == 400 and cause in body["message"] and len(body["message"]) < 600, body
    assert str(server.work_dir) not in body["message"], body  # the server's own paths are none of the client's business
    assert took < BOUND_S, f"refusing {artifact} took {took:.1f}s"
    _nothing_escaped(hostile, server.work_dir)
    assert not list((server.work_dir / "registrations").glob("*")), "the refused registration left files behind"
    assert requests.get(f"{server.url}/models", timeout=10).json()["models"] == [
        {"modelName": "ok", "modelUrl": "ok.mar"}]


@pytest.mark.parametrize("artifact,file_name", [("evil-pth", "model.pth"), ("evil-mar", "weights.pth")])
def test_code_running_pickle_is_refused_at_registration(server: Server, hostile: dict[str, Any], artifact: str,
                                                        file_name: str) -> None:
    status, body = _register(server, str(hostile[artifact]))
    assert status == 400 and file_name in body["message"], body
    assert not hostile["marker"].exists(), "unpickling ran the payload's code"


# -- row 17: TorchServe's own ports ------------------------------------------------------------

def _torchserve(server: Server) -> dict[str, str]:
    return parse_properties((server.work_dir / "config.properties").read_text())


def _loopback(ip: str) -> bool:
    """127.0.0.1 and ::1, also as Java's dual-stack sockets show 127.0.0.1 (``::ffff:127.0.0.1``)."""
    address = ipaddress.ip_address(ip)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _listening(pid: int) -> list[tuple[str, int]]:
    return [(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]


def test_torchserve_listens_on_loopback_only(server: Server) -> None:
    props = _torchserve(server)
    java = server.java_pid()
    sockets = _listening(java)
    ports = {int(props[k].rsplit(":", 1)[1]) for k in ("inference_address", "management_address", "metrics_address")}
    ports |= {int(props["grpc_inference_port"]), int(props["grpc_management_port"])}
    assert ports <= {port for _, port in sockets}, (ports, sockets)  # we enumerated TorchServe's own sockets
    assert sockets and all(_loopback(ip) for ip, _ in sockets), sockets
    for worker in psutil.Process(java).children(recursive=True):  # workers talk over Unix sockets, if at all TCP: loopback
        assert all(_loopback(ip) for ip, _ in _listening(worker.pid)), worker.cmdline()


def _refused_for_its_token(response: requests.Response) -> bool:
    """TorchServe 0.12's answer to a missing or wrong token: 400, not 401 (its InvalidKeyException is a
    ModelException, which HttpRequestHandler answers with BAD_REQUEST), and this message."""
    return response.status_code == 400 and response.json()["message"].startswith("Token Authorization failed")


def test_torchserve_refuses_calls_without_its_token(server: Server) -> None:
    props = _torchserve(server)
    keys = json.loads((server.work_dir / "key_file.json").read_text())
    inference, management = props["inference_address"], props["management_address"]
    row = {"data": json.dumps({"x": 1})}
    assert _refused_for_its_token(requests.post(f"{inference}/predictions/ok", data=row, timeout=10))
    assert _refused_for_its_token(requests.get(f"{management}/models", timeout=10))
    wrong = {"Authorization": "Bearer not-the-key"}
    assert _refused_for_its_token(requests.get(f"{management}/models", headers=wrong, timeout=10))
    # an inference key does not open the management API
    inference_key = {"Authorization": f"Bearer {keys['inference']['key']}"}
    assert _refused_for_its_token(requests.get(f"{management}/models", headers=inference_key, timeout=10))
    # the keys do open them: it is the token that is refused, not the route
    bearer = {"Authorization": f"Bearer {keys['inference']['key']}"}
    assert requests.post(f"{inference}/predictions/ok", data=row, headers=bearer, timeout=30).status_code == 200
    bearer = {"Authorization": f"Bearer {keys['management']['key']}"}
    assert requests.get(f"{management}/models", headers=bearer, timeout=10).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{props['grpc_inference_port']}") as channel:
        ping = channel.unary_unary("/org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping",
                                   request_serializer=lambda m: m, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as info:
            ping(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
def bait(tmp_path: Path) -> Iterator[RecordingServer]:
    """An HTTP server holding a real archive: TorchServe must never ask it for anything."""
    build_mar(ASSETS / "version_handler.py", "bait", tmp_path)
    with recording_http_server(tmp_path) as web:
        yield web


def test_torchserve_itself_fetches_no_url(server: Server, bait: RecordingServer, tmp_path: Path) -> None:
    props = _torchserve(server)
    assert props["allowed_urls"] == "(?!)"
    keys = json.loads((server.work_dir / "key_file.json").read_text())
    bearer = {"Authorization": f"Bearer {keys['management']['key']}"}
    for url in (f"{bait.url}/bait.mar", f"file://{tmp_path}/bait.mar"):
        response = requests.post(f"{props['management_address']}/models", params={"url": url}, headers=bearer,
                                 timeout=30)
        assert response.status_code == 404 and "does not match any allowed URL" in response.json()["message"], \
            response.text
    assert bait.hits == []
    assert requests.get(f"{server.url}/v1/models", timeout=10).json()["models"] == ["ok"]
