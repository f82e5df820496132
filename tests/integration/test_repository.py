"""KServe's model repository extension as KServe's agent and tritonclient use it, on a server that
starts with no model (a multi-model ServingRuntime: the agent loads each TrainedModel later)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests

from tests.helpers import ASSETS, Server, build_mar, http, running
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What KServe mounts at /mnt/models for a multi-model InferenceService: empty at first."""
    return tmp_path_factory.mktemp("mnt-models")


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(Server(models_dir, tmp_path_factory.mktemp("repository"), args=["--allow_no_models"])) as srv:
        yield srv


def agent_downloads(models_dir: Path, name: str, digits: dict[str, Any], exploded: bool = False) -> Path:
    """What KServe's agent leaves for a TrainedModel: <model dir>/<name>/ with the model's files
    (a .mar served as application/zip arrives unpacked) and its SUCCESS.<sha> marker."""
    target = models_dir / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    if exploded:
        build_mar(Path(__file__).parents[2] / "examples" / "digits" / "handler.py", name, target,
                  digits["model_pt"], archive_format="no-archive")
        for entry in (target / name).iterdir():
            entry.rename(target / entry.name)
        (target / name).rmdir()
    else:
        shutil.copy(digits["store"] / "digits.mar", target / "digits.mar")
    (target / "SUCCESS.0123abcd").write_text("{}")
    return target


def agent_load(server: Server, name: str) -> tuple[int, Any]:
    """Exactly the agent's call: POST {} as JSON, 200 expected."""
    response = requests.post(f"{server.url}/v2/repository/models/{name}/load", json={}, timeout=300)
    return response.status_code, response.json()


def test_starts_live_and_ready_with_no_model(server: Server) -> None:
    assert http("GET", f"{server.url}/v2/health/live")[0] == 200
    assert http("GET", f"{server.url}/v2/health/ready") == (200, {"ready": True})
    assert http("GET", f"{server.url}/v1/models") == (200, {"models": []})
    assert http("POST", f"{server.url}/v2/repository/index", raw=b"") == (200, [])


def test_the_model_api_is_off_unless_switched_on(server: Server) -> None:
    response = requests.post(f"{server.url}/models", data={"url": "digits.mar"}, timeout=30)
    assert response.status_code == 403 and "TS_ENABLE_MODEL_API" in response.json()["message"]
    assert requests.delete(f"{server.url}/models/x", timeout=30).status_code == 403


def test_the_agent_loads_a_trained_model(server: Server, models_dir: Path, digits: dict[str, Any],
                                         digits_reference: list[list[float]]) -> None:
    agent_downloads(models_dir, "mnist-a", digits, exploded=True)
    assert agent_load(server, "mnist-a") == (200, {"name": "mnist-a", "load": True})
    status, body = http("POST", f"{server.url}/v1/models/mnist-a:predict", {"instances": digits["instances"][:2]})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], digits_reference[:2], atol=1e-6)
    assert http("GET", f"{server.url}/v2/health/ready")[0] == 200


def test_unknown_name_is_404_with_the_path_looked_at(server: Server, models_dir: Path) -> None:
    status, body = agent_load(server, "nope")
    assert status == 404 and str(models_dir / "nope") in body["error"]
    assert agent_load(server, ".hidden")[0] == 400  # names are checked before any path is built
    assert agent_load(server, "%2e%2e")[0] == 400


def test_unload_and_load_again_and_again(server: Server, models_dir: Path, digits: dict[str, Any]) -> None:
    agent_downloads(models_dir, "again", digits)
    for _ in range(5):
        assert agent_load(server, "again")[0] == 200
        assert http("POST", f"{server.url}/v1/models/again:predict", {"instances": [[0.0] * 64]})[0] == 200
        response = requests.post(f"{server.url}/v2/repository/models/again/unload", json={}, timeout=300)
        assert response.json() == {"name": "again", "unload": True}
        assert http("POST", f"{server.url}/v1/models/again:predict", {"instances": [[0.0] * 64]})[0] == 404
    assert requests.post(f"{server.url}/v2/repository/models/again/unload", timeout=30).status_code == 404


def test_a_model_that_cannot_load_is_refused_with_its_reason_and_loads_once_fixed(
        server: Server, models_dir: Path, digits: dict[str, Any]) -> None:
    """The agent loads a TrainedModel whose workers crash while loading, twice: each time an error
    that says why, and nothing of it served or left in TorchServe (which itself either unregisters
    a failed registration or keeps it at no worker: a race in its ModelManager). The fixed files
    then load under the same name and serve."""
    target = models_dir / "phoenix"
    build_mar(ASSETS / "faults" / "crash_on_load_handler.py", "phoenix", target)
    (target / "SUCCESS.0123abcd").write_text("{}")
    reason = "cannot load: weights file model.bin is missing (crashing on purpose)"
    said = "phoenix_1.0-stdout MODEL_LOG - Failed to load model phoenix, exception " + reason
    for _ in range(2):
        before = server.log().count(said)
        status, body = agent_load(server, "phoenix")
        if reason not in body.get("error", ""):
            # TorchServe can lose the worker's last lines: when the worker disconnects, its
            # WorkerLifeCycle.exit() kills the process and closes the streams its reader may still
            # be reading. Then, and only then, its own answer is all there is to give.
            assert server.log().count(said) == before, ("the reason reached us but not the answer", body)
            assert (status, body) == (500, {"error": "Failed to start workers for model phoenix version: 1.0"})
        assert status == 500, (status, body)
        assert http("GET", f"{server.url}/v2/models/phoenix/ready")[0] == 404
        index = {row["name"] for row in http("POST", f"{server.url}/v2/repository/index", raw=b"")[1]}
        assert "phoenix" not in index
    props, key = server.torchserve("management")
    described = requests.get(f"{props['management_address']}/models/phoenix",
                             headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert described.status_code == 404, described.text[:300]  # nothing half-registered in TorchServe
    agent_downloads(models_dir, "phoenix", digits)  # the fixed files replace the broken ones
    assert agent_load(server, "phoenix") == (200, {"name": "phoenix", "load": True})
    assert http("POST", f"{server.url}/v1/models/phoenix:predict", {"instances": [[0.0] * 64]})[0] == 200
    assert http("GET", f"{server.url}/v2/health/ready")[0] == 200


def test_loading_a_served_model_reloads_it_without_a_failed_request(server: Server, models_dir: Path,
                                                                      digits: dict[str, Any]) -> None:
    target = models_dir / "reloaded"
    target.mkdir()
    build_mar(ASSETS / "version_handler.py", "reloaded", target, version="1.0")
    assert agent_load(server, "reloaded")[0] == 200
    url = f"{server.url}/v1/models/reloaded:predict"
    assert requests.post(url, json={"instances": [1]}, timeout=30).json() == {"predictions": [{"version": "1.0"}]}
    build_mar(ASSETS / "version_handler.py", "reloaded", target, version="2.0")  # new files, same place
    with LoadLoop(url, {"instances": [1]}) as loop:
        assert agent_load(server, "reloaded")[0] == 200
    assert loop.statuses().keys() == {200}, loop.statuses()
    assert set(loop.versions()) == {"1.0", "2.0"}
    assert requests.post(url, json={"instances": [1]}, timeout=30).json() == {"predictions": [{"version": "2.0"}]}
    index = http("POST", f"{server.url}/v2/repository/index", {"ready": True})[1]
    assert {"name": "reloaded", "version": "2.0", "state": "READY", "reason": ""} in index


# tritonclient's gRPC module and kserve's define the same protobuf names ("inference.*"), which
# cannot share one process: the client runs in its own, as a real client would.
TRITON_CLIENT = """
import json, sys
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

http_port, grpc_port, name = sys.argv[1:]
seen = {}
rest = triton_http.InferenceServerClient(f"127.0.0.1:{http_port}")
rest.load_model(name)
seen["http ready after load"] = rest.is_model_ready(name)
seen["http index"] = rest.get_model_repository_index()
rest.unload_model(name)
seen["http ready after unload"] = rest.is_model_ready(name)
grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
grpc.load_model(name)
seen["grpc ready after load"] = grpc.is_model_ready(name)
seen["grpc index"] = grpc.get_model_repository_index(as_json=True)["models"]
grpc.unload_model(name)
try:
    seen["grpc ready after unload"] = grpc.is_model_ready(name)
except InferenceServerException as exc:  # kserve's ModelReady: NOT_FOUND for a model it does not serve
    seen["grpc ready after unload"] = exc.status()
try:
    grpc.load_model("missing")
except InferenceServerException as exc:
    seen["grpc missing"] = [exc.status(), exc.message()]
print(json.dumps(seen))
"""


def test_tritonclient_over_http_and_grpc(server: Server, models_dir: Path, digits: dict[str, Any]) -> None:
    agent_downloads(models_dir, "triton", digits)
    run = subprocess.run([sys.executable, "-c", TRITON_CLIENT, str(server.http_port), str(server.grpc_port), "triton"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout)
    assert seen["http ready after load"] and seen["grpc ready after load"]
    assert not seen["http ready after unload"] and seen["grpc ready after unload"] == "StatusCode.NOT_FOUND"
    assert {"name": "triton", "version": "1.0", "state": "READY", "reason": ""} in seen["http index"]
    assert {"name": "triton", "version": "1.0", "state": "READY"} in seen["grpc index"]
    status, message = seen["grpc missing"]
    assert status == "StatusCode.NOT_FOUND" and "not found: looked for" in message
