"""Start-up, supervision, token expiry and shutdown, with the real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import psutil
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


def test_readiness_follows_a_torchserve_kill_and_serving_resumes(server_factory: Any, digits: dict[str, Any]) -> None:
    srv = server_factory(digits["store"], model_name="digits")
    srv.wait_ready()
    os.kill(srv.java_pid(), signal.SIGKILL)
    _wait_for(lambda: http("GET", f"{srv.url}/v2/health/ready", timeout=5)[0] == 503, 10, "readiness to drop")
    assert http("GET", f"{srv.url}/v2/models/digits/ready")[0] == 503
    status, body = http("POST", f"{srv.url}/v1/models/digits:predict", {"instances": [digits["instances"][0]]})
    assert status == 503, body
    _wait_for(lambda: http("GET", f"{srv.url}/v2/health/ready", timeout=5)[0] == 200, 120, "readiness to return")
    status, body = http("POST", f"{srv.url}/v1/models/digits:predict", {"instances": [digits["instances"][0]]})
    assert status == 200 and len(body["predictions"][0]) == 10
    assert "restarting TorchServe" in srv.log()


def test_server_exits_non_zero_when_torchserve_keeps_dying(server_factory: Any, digits: dict[str, Any]) -> None:
    srv = server_factory(digits["store"], args=["--max_restarts", "0"])
    srv.wait_ready()
    os.kill(srv.java_pid(), signal.SIGKILL)
    assert srv.wait_exit(timeout=60) == 1
    assert "giving up" in srv.log()
    _wait_for(lambda: not processes_under(srv.work_dir), 10, "no process left behind")


def test_sigterm_drains_in_flight_requests_and_leaves_nothing(server_factory: Any, sleepy_store: Path) -> None:
    srv = server_factory(sleepy_store)
    srv.wait_ready()
    results: list[tuple[int, Any]] = []

    def slow_call() -> None:
        results.append(http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"sleep": 3}]}))

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(1.0)  # the request is now inside the handler
    srv.proc.send_signal(signal.SIGTERM)
    caller.join(timeout=30)
    assert results == [(200, {"predictions": [{"echo": {"sleep": 3}}]})]
    assert srv.wait_exit(timeout=60) == 0
    assert not processes_under(srv.work_dir)
    # Stopped accepting: the port is closed now.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{srv.url}/v2/health/live", timeout=2)


def test_a_killed_server_leaves_no_torchserve_behind(server_factory: Any, sleepy_store: Path) -> None:
    srv = server_factory(sleepy_store)
    srv.wait_ready()
    java = srv.java_pid()
    srv.proc.send_signal(signal.SIGKILL)  # no chance to clean up: the launcher must notice on its own
    srv.wait_exit(timeout=10)
    try:
        _wait_for(lambda: not processes_under(srv.work_dir), 60, "TorchServe to stop after its parent died")
    except AssertionError:
        left = [(p.pid, p.status(), " ".join(p.cmdline())[:120]) for p in processes_under(srv.work_dir)]
        raise AssertionError(f"left behind: {left}") from None
    try:  # gone, or a zombie waiting for this sandbox's init to reap it
        assert psutil.Process(java).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


def test_handler_slower_than_its_response_timeout_is_504(server_factory: Any, sleepy_store: Path) -> None:
    srv = server_factory(sleepy_store, env={"TS_DEFAULT_RESPONSE_TIMEOUT": "2"})
    srv.wait_ready()
    status, body = http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"sleep": 4}]})
    assert status == 504 and "responseTimeout of 2s" in body["error"]
    # TorchServe restarts the worker; the model serves again afterwards.
    _wait_for(lambda: http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"sleep": 0}]})[0] == 200,
              60, "the model to serve again")


def test_keeps_serving_past_token_expiry(server_factory: Any, sleepy_store: Path) -> None:
    """TorchServe's keys expire after one minute here; the server must renew them and keep serving."""
    srv = server_factory(sleepy_store, env={"TS_TOKEN_EXPIRATION_MIN": "1"})
    srv.wait_ready()
    key_file = srv.work_dir / "key_file.json"
    first_key = json.loads(key_file.read_text())["inference"]["key"]
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        status, body = http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"n": 1}]})
        assert status == 200, body
        time.sleep(2)
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


def test_torchserve_never_ready_fails_start_up_with_its_log(server_factory: Any, tmp_path: Path) -> None:
    store = tmp_path / "broken"
    build_mar(ASSETS / "broken_handler.py", "broken", store)
    srv = server_factory(store, args=["--startup_timeout", "20"])
    assert srv.wait_exit(timeout=90) == 1
    log = srv.log()
    # TorchServe answers the registration with its own reason (before the 20 s run out)
    assert "start-up failed: Failed to start workers for model broken version: 1.0" in log
    assert "broken on purpose" in log  # the handler's error, from TorchServe's last lines
    _wait_for(lambda: not processes_under(srv.work_dir), 10, "no process left behind")
