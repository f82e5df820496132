"""TS_LOAD_MODELS in the runtime description's form: several models, renamed, in one server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ASSETS, Server, build_mar, http

pytestmark = pytest.mark.integration


def test_two_models_renamed_by_ts_load_models(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_mar(ASSETS / "sleepy_handler.py", "resnet18", store)
    build_mar(ASSETS / "sleepy_handler.py", "densenet121", store)
    build_mar(ASSETS / "sleepy_handler.py", "unused", store)
    srv = Server(store, tmp_path, env={"TS_LOAD_MODELS": "resnet=resnet18.mar,densenet=densenet121.mar"})
    try:
        srv.wait_ready()
        status, body = http("GET", f"{srv.url}/v1/models")
        assert status == 200 and sorted(body["models"]) == ["densenet", "resnet"]
        for name in ("resnet", "densenet"):
            assert http("POST", f"{srv.url}/v1/models/{name}:predict", {"instances": [{"who": name}]}) == (
                200, {"predictions": [{"echo": {"who": name}}]})
            assert http("GET", f"{srv.url}/v2/models/{name}/ready")[0] == 200
        assert http("POST", f"{srv.url}/v1/models/unused:predict", {"instances": [{}]})[0] == 404
    finally:
        srv.stop()
