"""Models managed at run time, for real: TorchServe's management API on the KServe port, versions,
the v2 repository extension, and every refusal, against the real server and real storage servers."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
import torch

from tests.helpers import ASSETS, ROOT, Server, build_mar, http, running
from tests.load_loop import LoadLoop, grpc_infer
from tests.storage_servers import RecordingServer, S3Server, recording_http_server, s3_server

pytestmark = pytest.mark.integration

KEY = "integration-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_MODELS = 5


@pytest.fixture(scope="module")
def assets(digits: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    web = root / "web"
    build_mar(ROOT / "examples" / "digits" / "handler.py", "webdigits", web, digits["model_pt"], archive_format="tgz")
    eager = root / "local" / "eager"
    eager.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "eager" / "model.py", eager / "model.py")
    torch.manual_seed(1)
    torch.save({"linear.weight": torch.randn(10, 784), "linear.bias": torch.randn(10)}, eager / "model.pth")
    for version in ("1.0", "2.0"):
        build_mar(ASSETS / "version_handler.py", "versioned", root / "local" / f"v{version}", version=version)
    elsewhere = root / "elsewhere"
    shutil.copytree(digits["store"], elsewhere)
    return {"web": web, "local": root / "local", "eager": eager, "elsewhere": elsewhere}


@pytest.fixture(scope="module")
def s3(digits: dict[str, Any]) -> Iterator[S3Server]:
    with s3_server() as server:
        client = server.client()
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="new-model.mar", Body=(digits["store"] / "digits.mar").read_bytes())
        yield server


@pytest.fixture(scope="module")
def web(assets: dict[str, Path]) -> Iterator[RecordingServer]:
    with recording_http_server(assets["web"]) as server:
        yield server


@pytest.fixture(scope="module")
def elsewhere(assets: dict[str, Path]) -> Iterator[RecordingServer]:
    """A server no allow-list names: it must never see a request."""
    with recording_http_server(assets["elsewhere"]) as server:
        yield server


@pytest.fixture(scope="module")
def server(digits: dict[str, Any], assets: dict[str, Path], s3: S3Server, web: RecordingServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    allowed = ",".join([r"s3://models/.*", f"{web.url}/.*", f"{assets['local']}/.*"])
    with running(Server(digits["store"], tmp_path_factory.mktemp("management"), model_name="digits",
                        env={"TS_ENABLE_MODEL_API": "true", "TS_MODEL_API_KEY": KEY, "TS_ALLOWED_URLS": allowed,
                             "TS_MAX_MODELS": str(MAX_MODELS), **s3.env()})) as srv:
        yield srv


def register(server: Server, **fields: str) -> tuple[int, Any]:
    """POST /models as curl -F does (multipart form fields), synchronously."""
    response = requests.post(f"{server.url}/models", files={k: (None, v) for k, v in
                                                            {"synchronous": "true", **fields}.items()},
                             headers=AUTH, timeout=300)
    return response.status_code, response.json()


def call(server: Server, method: str, path: str, auth: bool = True, **params: str) -> tuple[int, Any]:
    response = requests.request(method, f"{server.url}{path}", params=params, headers=AUTH if auth else {},
                                timeout=300)
    return response.status_code, response.json()


def predict_everywhere(server: Server, name: str, rows: list[list[float]]) -> list[np.ndarray]:
    """The same rows over v1, v2 REST and v2 gRPC."""
    status, v1 = http("POST", f"{server.url}/v1/models/{name}:predict", {"instances": rows})
    assert status == 200, v1
    status, v2 = http("POST", f"{server.url}/v2/models/{name}/infer",
                      {"inputs": [{"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
                                   "data": [v for row in rows for v in row]}]})
    assert status == 200, v2
    output, _ = grpc_infer(server.grpc_port, name, rows)
    return [np.array(v1["predictions"]), np.array(v2["outputs"][0]["data"]).reshape(len(rows), -1), output]


def gone_everywhere(server: Server, name: str) -> None:
    assert http("POST", f"{server.url}/v1/models/{name}:predict", {"instances": [[0.0] * 64]})[0] == 404
    assert http("GET", f"{server.url}/v2/models/{name}")[0] == 404
    assert call(server, "GET", f"/models/{name}")[0] == 404
    assert name not in http("GET", f"{server.url}/v1/models")[1]["models"]


def test_register_from_s3_as_the_documentation_shows(server: Server, digits: dict[str, Any],
                                                     digits_reference: list[list[float]]) -> None:
    """curl -X POST /models -F "model_name=new-model" -F "url=s3://bucket/new-model.mar"."""
    status, body = register(server, model_name="new-model", url="s3://models/new-model.mar")
    assert (status, body) == (200, {"status": 'Model "new-model" Version: 1.0 registered with 1 initial workers'})
    for answer in predict_everywhere(server, "new-model", digits["instances"][:4]):
        np.testing.assert_allclose(answer, digits_reference[:4], atol=1e-6)
    assert http("GET", f"{server.url}/v2/health/ready")[0] == 200
    status, models = call(server, "GET", "/models")
    assert status == 200 and {"modelName": "new-model", "modelUrl": "s3://models/new-model.mar"} in models["models"]
    assert call(server, "GET", "/models", limit="1") == (
        200, {"nextPageToken": "1", "models": [{"modelName": "digits", "modelUrl": "digits.mar"}]})
    assert call(server, "GET", "/models", limit="1", next_page_token="1")[1]["models"][0]["modelName"] == "new-model"
    metrics = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'model_name="new-model"' in metrics  # TorchServe's own counters and kserve's histograms
    assert call(server, "DELETE", "/models/new-model") == (200, {"status": 'Model "new-model" unregistered'})
    gone_everywhere(server, "new-model")


def test_register_a_tgz_over_http(server: Server, web: RecordingServer, digits: dict[str, Any],
                                  digits_reference: list[list[float]]) -> None:
    status, body = register(server, url=f"{web.url}/webdigits.tar.gz")
    assert status == 200, body
    for answer in predict_everywhere(server, "webdigits", digits["instances"][:3]):
        np.testing.assert_allclose(answer, digits_reference[:3], atol=1e-6)
    assert call(server, "DELETE", "/models/webdigits")[0] == 200


def test_register_an_eager_model_from_a_local_directory(server: Server, assets: dict[str, Path]) -> None:
    status, body = register(server, url=str(assets["eager"]), model_name="eager", batch_size="4",
                            max_batch_delay="20")
    assert status == 200, body
    (described,) = call(server, "GET", "/models/eager")[1]
    assert (described["batchSize"], described["maxBatchDelay"], described["modelUrl"]) == (4, 20, str(assets["eager"]))
    rows = np.random.default_rng(0).random((3, 784)).tolist()
    state = torch.load(assets["eager"] / "model.pth")
    expected = (torch.tensor(rows) @ state["linear.weight"].T + state["linear.bias"]).numpy()
    for answer in predict_everywhere(server, "eager", rows):
        np.testing.assert_allclose(answer, expected, atol=1e-4)
    assert call(server, "DELETE", "/models/eager")[0] == 200
    gone_everywhere(server, "eager")


def test_scale_changes_the_workers_described(server: Server) -> None:
    with LoadLoop(f"{server.url}/v1/models/digits:predict", {"instances": [[0.0] * 64]}) as loop:
        status, body = call(server, "PUT", "/models/digits", min_worker="2", max_worker="2", synchronous="true")
    assert loop.statuses().keys() == {200}, loop.statuses()  # no request dropped while workers start
    assert (status, body) == (200, {"status": "Workers scaled to 2 for model: digits"})
    (described,) = call(server, "GET", "/models/digits")[1]
    assert described["minWorkers"] == 2 and len(described["workers"]) == 2
    assert call(server, "PUT", "/models/digits", min_worker="1", synchronous="true")[0] == 200
    assert len(call(server, "GET", "/models/digits")[1][0]["workers"]) == 1


def test_versions_and_set_default_under_load(server: Server, assets: dict[str, Path]) -> None:
    for version in ("1.0", "2.0"):
        status, body = register(server, url=str(assets["local"] / f"v{version}" / "versioned.mar"))
        assert status == 200, body
    described = call(server, "GET", "/models/versioned/all")[1]
    assert sorted(d["modelVersion"] for d in described) == ["1.0", "2.0"]
    url = f"{server.url}/v1/models/versioned:predict"
    with LoadLoop(url, {"instances": [1]}) as loop:
        assert call(server, "PUT", "/models/versioned/2.0/set-default") == (
            200, {"status": 'Default version successfully updated for model "versioned" to "2.0"'})
    assert loop.statuses().keys() == {200}, loop.statuses()
    assert set(loop.versions()) == {"1.0", "2.0"}  # the switch happened under the load
    # Explicit versions: the header, versioned v2 routes, gRPC model_version.
    one = requests.post(url, json={"instances": [1]}, headers={"x-model-version": "1.0"}, timeout=30)
    assert one.json() == {"predictions": [{"version": "1.0"}]} and one.headers["x-model-version"] == "1.0"
    status, body = http("POST", f"{server.url}/v2/models/versioned/versions/1.0/infer",
                        {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]})
    assert status == 200 and body["model_version"] == "1.0" and '"1.0"' in body["outputs"][0]["data"][0]
    assert http("GET", f"{server.url}/v2/models/versioned/versions/2.0/ready") == (
        200, {"name": "versioned", "ready": True})
    assert http("GET", f"{server.url}/v2/models/versioned/versions/9.9/ready")[0] == 404
    assert http("GET", f"{server.url}/v2/models/versioned")[1]["versions"] == ["1.0", "2.0"]
    _, answered = grpc_infer(server.grpc_port, "versioned", [[1.0]], version="1.0")
    assert answered == "1.0"
    _, answered = grpc_infer(server.grpc_port, "versioned", [[1.0]])
    assert answered == "2.0"
    # TorchServe's rule: the default goes last.
    assert call(server, "DELETE", "/models/versioned/2.0") == (
        403, {"code": 403, "type": "InvalidModelVersionException",
              "message": "Cannot remove default version for model versioned"})
    assert call(server, "DELETE", "/models/versioned/1.0")[0] == 200
    assert call(server, "DELETE", "/models/versioned")[0] == 200
    gone_everywhere(server, "versioned")


def test_a_version_of_an_archive_already_in_the_model_store(server: Server) -> None:
    status, body = register(server, url="digits.mar", model_version="7.0")
    assert (status, body) == (200, {"status": 'Model "digits" Version: 7.0 registered with 1 initial workers'})
    response = requests.post(f"{server.url}/v1/models/digits:predict", json={"instances": [[0.0] * 64]},
                             headers={"x-model-version": "7.0"}, timeout=30)
    assert response.status_code == 200 and response.headers["x-model-version"] == "7.0"
    assert register(server, url="digits.mar", model_version="7.0") == (
        409, {"code": 409, "type": "ConflictStatusException",
              "message": "Model version 7.0 is already registered for model digits"})
    assert call(server, "DELETE", "/models/digits/7.0")[0] == 200


def test_every_refusal_says_why_and_fetches_nothing(server: Server, web: RecordingServer,
                                                    elsewhere: RecordingServer, assets: dict[str, Path]) -> None:
    form = {"url": f"{elsewhere.url}/digits.mar", "synchronous": "true"}
    no_key = requests.post(f"{server.url}/models", data=form, timeout=30)
    assert no_key.status_code == 401 and "TS_MODEL_API_KEY" in no_key.json()["message"]
    wrong = requests.post(f"{server.url}/models", data=form, headers={"Authorization": "Bearer " + "x" * 30},
                          timeout=30)
    assert wrong.status_code == 401
    assert call(server, "DELETE", "/models/digits", auth=False)[0] == 401
    assert call(server, "PUT", "/models/digits", auth=False, min_worker="3")[0] == 401
    refused = [
        ({"url": f"{elsewhere.url}/digits.mar"}, 403, "TS_ALLOWED_URLS"),
        ({"url": f"{web.url}/../digits.mar"}, 400, "'..'"),
        ({"url": f"{web.url}/%2e%2e/digits.mar"}, 400, "percent-encoded"),
        ({"url": f"http://user:pw@{web.url[len('http://'):]}/webdigits.tar.gz"}, 400, "user information"),
        ({"url": "ftp://example.com/x.mar"}, 400, "scheme"),
        ({"url": str(assets["local"] / ".." / "elsewhere" / "digits.mar")}, 400, "'..'"),
        ({"url": "digits.mar", "model_name": "../x"}, 400, "model_name"),
        ({"url": "digits.mar", "model_name": "x" * 65}, 400, "model_name"),
        ({"url": "digits.mar", "model_version": "all"}, 400, "model_version"),
        ({"url": "digits.mar", "batch_size": "zero"}, 400, "batch_size"),
        ({}, 400, "Parameter url is required."),
        ({"url": "missing.mar"}, 404, "model store"),
    ]
    for fields, status, fragment in refused:
        got, body = register(server, **fields)
        assert got == status and fragment in body["message"], (fields, got, body)
        assert set(body) == {"code", "type", "message"}
    # A redirect from an allowed server to one that is not allowed is not followed.
    web.redirects["/moved.mar"] = f"{elsewhere.url}/digits.mar"
    got, body = register(server, url=f"{web.url}/moved.mar")
    assert got == 400 and "redirected to a URL that is not allowed" in body["message"], body
    assert "/moved.mar" in web.hits
    assert elsewhere.hits == []  # nothing refused ever reached it
    upload = requests.post(f"{server.url}/models", files={"url": ("x.mar", b"PK")}, headers=AUTH, timeout=30)
    assert upload.status_code == 400 and "upload" in upload.json()["message"]


def test_workers_that_fail_to_start_leave_nothing_registered(server: Server, assets: dict[str, Path]) -> None:
    broken = build_mar(ASSETS / "broken_handler.py", "broken", assets["local"] / "broken")
    for _ in range(2):  # and so the same registration fails the same way again, never 409
        status, body = register(server, url=str(broken))
        assert status == 500 and "Failed to start workers for model broken" in body["message"], body
        assert call(server, "GET", "/models/broken")[0] == 404
    assert not any(p.name.startswith("broken") for p in (server.work_dir / "model-store").iterdir())
    assert http("GET", f"{server.url}/v2/health/ready")[0] == 200


def test_the_model_limit(server: Server) -> None:
    served = len(http("POST", f"{server.url}/v2/repository/index", raw=b"")[1])
    for version in range(served, MAX_MODELS):
        assert register(server, url="digits.mar", model_version=f"{10 + version}.0")[0] == 200
    status, body = register(server, url="digits.mar", model_version="99.0")
    assert status == 409 and "TS_MAX_MODELS" in body["message"]
    for version in range(served, MAX_MODELS):
        assert call(server, "DELETE", f"/models/digits/{10 + version}.0")[0] == 200


def test_run_time_registrations_come_back_after_the_jvm_is_killed(server: Server, assets: dict[str, Path]) -> None:
    status, body = register(server, url=str(assets["local"] / "v2.0" / "versioned.mar"), batch_size="3",
                            initial_workers="2", model_version="5.0")
    assert status == 200, body
    os.kill(server.java_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while http("GET", f"{server.url}/v2/health/ready", timeout=5)[0] == 200:  # the death is noticed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, body = register(server, url="digits.mar", model_version="6.0")
    assert status == 503 and "restarting" in body["message"]  # no change while TorchServe is away
    deadline = time.monotonic() + 120
    while http("GET", f"{server.url}/v2/health/ready", timeout=5)[0] != 200:  # and everything is back
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.5)
    (described,) = call(server, "GET", "/models/versioned")[1]
    assert (described["modelVersion"], described["batchSize"], len(described["workers"])) == ("5.0", 3, 2)
    status, body = http("POST", f"{server.url}/v1/models/versioned:predict", {"instances": [1]})
    assert (status, body) == (200, {"predictions": [{"version": "5.0"}]})
    assert http("POST", f"{server.url}/v1/models/digits:predict", {"instances": [[0.0] * 64]})[0] == 200
    assert call(server, "DELETE", "/models/versioned")[0] == 200


def test_requests_in_flight_finish_before_a_model_goes(server: Server, assets: dict[str, Path]) -> None:
    assert register(server, url=str(assets["local"] / "v1.0" / "versioned.mar"))[0] == 200
    answers: list[tuple[int, Any]] = []
    slow = threading.Thread(target=lambda: answers.append(
        http("POST", f"{server.url}/v1/models/versioned:predict", {"instances": [{"sleep": 3}]})))
    slow.start()
    time.sleep(1)  # the slow request is in the handler
    started = time.monotonic()
    assert call(server, "DELETE", "/models/versioned")[0] == 200
    assert time.monotonic() - started >= 1.5  # the removal waited for it
    slow.join(timeout=30)
    assert answers == [(200, {"predictions": [{"version": "1.0"}]})]
    gone_everywhere(server, "versioned")
