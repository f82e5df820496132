"""TS_LOAD_MODELS in the runtime description's form: several models, renamed, in one server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ASSETS, Server, build_mar, http

pytestmark = pytest.mark.integration


def test_two_models_renamed_by_ts_load_models(tmp_path: Path) -> None:
    """Also: with TorchServe's token authorization turned off, no key file, and requests still pass."""
    store = tmp_path / "store"
    build_mar(ASSETS / "sleepy_handler.py", "resnet18", store)
    build_mar(ASSETS / "sleepy_handler.py", "densenet121", store)
    build_mar(ASSETS / "sleepy_handler.py", "unused", store)
    srv = Server(store, tmp_path, env={"TS_LOAD_MODELS": "resnet=resnet18.mar,densenet=densenet121.mar",
                                       "TS_DISABLE_TOKEN_AUTHORIZATION": "true"})
    try:
        srv.wait_ready()
        assert not (srv.work_dir / "key_file.json").exists()
        status, body = http("GET", f"{srv.url}/v1/models")
        assert status == 200 and sorted(body["models"]) == ["densenet", "resnet"]
        for name in ("resnet", "densenet"):
            assert http("POST", f"{srv.url}/v1/models/{name}:predict", {"instances": [{"who": name}]}) == (
                200, {"predictions": [{"echo": {"who": name}}]})
            assert http("GET", f"{srv.url}/v2/models/{name}/ready")[0] == 200
        assert http("POST", f"{srv.url}/v1/models/unused:predict", {"instances": [{}]})[0] == 404
    finally:
        srv.stop()


def test_kserve_layout_user_config_is_merged_under_env(tmp_path: Path) -> None:
    """<storage>/config/config.properties + <storage>/model-store/*.mar, KServe's documented layout."""
    storage = tmp_path / "storage"
    build_mar(ASSETS / "sleepy_handler.py", "sleepy", storage / "model-store")
    (storage / "config").mkdir()
    (storage / "config" / "config.properties").write_text(
        "job_queue_size=7\ndefault_response_timeout=33\ninference_address=http://0.0.0.0:1\n"
    )
    srv = Server(storage, tmp_path, env={"TS_DEFAULT_RESPONSE_TIMEOUT": "44"})
    try:
        srv.wait_ready()
        props = (srv.work_dir / "config.properties").read_text()
        assert "job_queue_size=7" in props
        assert "default_response_timeout=44" in props  # env beats the user's file
        assert "inference_address=http://127.0.0.1:" in props  # ours beats both
        assert http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"k": 1}]}) == (
            200, {"predictions": [{"echo": {"k": 1}}]})
    finally:
        srv.stop()


def test_tgz_and_unarchived_models_serve(tmp_path: Path) -> None:
    """Also: two archives of one model name are two versions of it; the highest is the default."""
    storage = tmp_path / "storage"
    for fmt, name in (("tgz", "packed"), ("no-archive", "unpacked")):
        build_mar(ASSETS / "sleepy_handler.py", name, storage, archive_format=fmt)
    for version in ("1.0", "2.0"):
        built = build_mar(ASSETS / "version_handler.py", "versioned", tmp_path / version, version=version)
        built.rename(storage / f"versioned-{version}.mar")
    srv = Server(storage, tmp_path)
    try:
        srv.wait_ready()
        for name in ("packed", "unpacked"):
            assert http("POST", f"{srv.url}/v1/models/{name}:predict", {"instances": [{"m": name}]}) == (
                200, {"predictions": [{"echo": {"m": name}}]})
        assert http("POST", f"{srv.url}/v1/models/versioned:predict", {"instances": [1]}) == (
            200, {"predictions": [{"version": "2.0"}]})
        assert http("POST", f"{srv.url}/v2/models/versioned/versions/1.0/infer",
                    {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]})[1]["model_version"] == "1.0"
        assert http("GET", f"{srv.url}/v2/models/versioned")[1]["versions"] == ["1.0", "2.0"]
    finally:
        srv.stop()
