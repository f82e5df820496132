"""Start-up, supervision and token expiry, with the real processes.

Faults while serving (killed workers and JVMs, SIGTERM with calls in flight, SIGKILL of our
server, a model that cannot load beside others): test_reliability_faults.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers import ASSETS, Server, build_mar, http, processes_under

pytestmark = pytest.mark.integration


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(storage: Path | str, **kwargs: Any) -> Server:
        sub = tmp_path / f"server{len(servers)}"
        sub.mkdir()
        srv = Server(storage, sub, **kwargs)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="module")
def sleepy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("sleepy")
    build_mar(ASSETS / "sleepy_handler.py", "sleepy", store)
    return store


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_server_exits_non_zero_when_torchserve_keeps_dying(server_factory: Any, digits: dict[str, Any]) -> None:
    srv = server_factory(digits["store"], args=["--max_restarts", "0"])
    srv.wait_ready()
    os.kill(srv.java_pid(), signal.SIGKILL)
    assert srv.wait_exit(timeout=60) == 1
    assert "giving up" in srv.log()
    _wait_for(lambda: not processes_under(srv.work_dir), 10, "no process left behind")


def test_keeps_serving_past_token_expiry(server_factory: Any, sleepy_store: Path) -> None:
    """TorchServe's keys expire after 15 s here (its setting is a fraction of minutes); the server must
    renew them and keep serving."""
    srv = server_factory(sleepy_store, env={"TS_TOKEN_EXPIRATION_MIN": "0.25"})
    srv.wait_ready()
    key_file = srv.work_dir / "key_file.json"
    first_key = json.loads(key_file.read_text())["inference"]["key"]
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        status, body = http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"n": 1}]})
        assert status == 200, body
        time.sleep(1)
    keys = json.loads(key_file.read_text())
    assert keys["inference"]["key"] != first_key  # renewed, because the first one expired

    # Someone else renews the key behind our back: our cached key is now rejected,
    # and the next request must recover on its own.
    manage = [l for l in (srv.work_dir / "config.properties").read_text().splitlines()
              if l.startswith("management_address=")][0].split("=", 1)[1]
    request = urllib.request.Request(f"{manage}/token?type=inference", method="POST",
                                     headers={"Authorization": f"Bearer {keys['API']['key']}"})
    urllib.request.urlopen(request, timeout=10).read()
    assert http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"n": 2}]}) == (
        200, {"predictions": [{"echo": {"n": 2}}]})


def test_bad_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "kserve_torchserve", "--storage_uri", str(tmp_path)],
                            env={**os.environ, "TS_BATCH_SIZE": "abc"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "kserve-torchserve: TS_BATCH_SIZE='abc' is invalid: expected an integer >= 1"


def test_storage_without_a_model_fails_start_up_clearly(server_factory: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    srv = server_factory(empty)
    assert srv.wait_exit(timeout=60) == 1
    assert f"no model found in {empty}" in srv.log()


def test_no_model_that_can_load_fails_start_up_with_the_reason(server_factory: Any, tmp_path: Path) -> None:
    """Its only model can never load: nothing to serve, so start-up fails (beside other models, a model
    that cannot load is left out instead: test_reliability_faults.py)."""
    store = tmp_path / "broken"
    build_mar(ASSETS / "broken_handler.py", "broken", store)
    srv = server_factory(store, args=["--startup_timeout", "20"])
    assert srv.wait_exit(timeout=90) == 1
    log = srv.log()
    # TorchServe answers the registration (before the 20 s run out); the cause is the handler's error
    assert ("start-up failed: no model could be loaded: broken 1.0: its workers could not load: "
            "this model cannot load: broken on purpose") in log
    _wait_for(lambda: not processes_under(srv.work_dir), 10, "no process left behind")
