"""A/B testing inside the pod, for real: weighted split on every protocol, sticky sessions, header
overrides, shadow traffic, per-version metrics and a guarded canary that rolls itself back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from kserve import InferenceGRPCClient, InferInput, InferRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ASSETS, Server, build_mar, http
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.integration

KEY = "traffic-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
N = 2000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("traffic")
    storage, extras = root / "storage", root / "extras"
    for version in ("1.0", "2.0"):
        built = build_mar(ASSETS / "version_handler.py", "versioned", root / version, version=version)
        storage.mkdir(exist_ok=True)
        built.rename(storage / f"versioned-{version}.mar")
    for version in ("3.0-slow", "4.0-flaky"):
        build_mar(ASSETS / "version_handler.py", "versioned", extras / version, version=version)
    srv = Server(storage, root, env={
        "TS_TRAFFIC_SPLIT": json.dumps({"versioned": {"1.0": 80, "2.0": 20}}),
        "TS_ENABLE_MODEL_API": "true", "TS_MODEL_API_KEY": KEY, "TS_ALLOWED_URLS": f"{extras}/.*",
        "TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "5",
    })
    srv.extras = extras  # type: ignore[attr-defined]
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def put_traffic(server: Server, body: Any) -> tuple[int, Any]:
    response = requests.put(f"{server.url}/models/versioned/traffic", json=body, headers=AUTH, timeout=60)
    return response.status_code, response.json()


def v1_versions(server: Server, n: int, headers: Any = None) -> list[str]:
    """The version answering each of n v1 requests (x-model-version); headers(i) per request."""
    local = threading.local()

    def one(i: int) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(f"{server.url}/v1/models/versioned:predict", json={"instances": [i]},
                                      headers=headers(i) if headers else None, timeout=60)
        assert response.status_code == 200, response.text
        version = response.headers["x-model-version"]
        assert response.json() == {"predictions": [{"version": version}]}  # the header tells the truth
        return version

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def v2_versions(server: Server, n: int) -> list[str]:
    def one(i: int) -> str:
        status, body = http("POST", f"{server.url}/v2/models/versioned/infer",
                            {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [i]}]})
        assert status == 200, body
        assert json.loads(body["outputs"][0]["data"][0]) == {"version": body["model_version"]}
        return str(body["model_version"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def grpc_versions(server: Server, n: int) -> list[str]:
    async def run() -> list[str]:
        limit = asyncio.Semaphore(16)
        async with InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=60, retries=0) as client:
            async def one(i: int) -> str:
                tensor = InferInput(name="x", shape=[1, 1], datatype="FP32")
                tensor.set_data_from_numpy(np.array([[i]], dtype=np.float32), binary_data=False)
                async with limit:
                    response = await client.infer(InferRequest(model_name="versioned", infer_inputs=[tensor]))
                return str(response.model_version)
            return list(await asyncio.gather(*(one(i) for i in range(n))))

    return asyncio.run(run())


@pytest.mark.parametrize("protocol", ["v1", "v2 REST", "v2 gRPC"])
def test_the_split_from_start_up_holds_on_every_protocol(server: Server, protocol: str) -> None:
    versions = {"v1": v1_versions, "v2 REST": v2_versions, "v2 gRPC": grpc_versions}[protocol](server, N)
    counts = Counter(versions)
    assert set(counts) == {"1.0", "2.0"}
    assert abs(counts["1.0"] / N - 0.8) <= 0.04, counts


def test_all_or_nothing_is_exact_and_changes_lose_no_request(server: Server) -> None:
    with LoadLoop(f"{server.url}/v1/models/versioned:predict", {"instances": [1]}) as loop:
        assert put_traffic(server, {"weights": {"1.0": 100, "2.0": 0}})[0] == 200
        assert set(v1_versions(server, 200)) == {"1.0"}
        assert put_traffic(server, {"weights": {"1.0": 0, "2.0": 100}})[0] == 200
        assert set(v1_versions(server, 200)) == {"2.0"}
        assert put_traffic(server, {"weights": {"1.0": 80, "2.0": 20}})[0] == 200
    assert loop.statuses().keys() == {200}, loop.statuses()
    assert set(loop.versions()) == {"1.0", "2.0"}


def test_sticky_sessions_and_the_header_override(server: Server) -> None:
    status, body = put_traffic(server, {"weights": {"1.0": 80, "2.0": 20}, "sticky_header": "x-session-id"})
    assert status == 200 and body["sticky_header"] == "x-session-id"
    versions = v1_versions(server, 600, headers=lambda i: {"x-session-id": f"user-{i % 200}"})
    by_key: dict[int, set[str]] = {}
    for i, version in enumerate(versions):
        by_key.setdefault(i % 200, set()).add(version)
    assert all(len(seen) == 1 for seen in by_key.values())  # each session always on one version
    share = sum(1 for seen in by_key.values() if seen == {"1.0"}) / 200
    assert 0.7 <= share <= 0.9, share
    on_one = next(k for k, seen in by_key.items() if seen == {"1.0"})
    forced = v1_versions(server, 20, headers=lambda i: {"x-session-id": f"user-{on_one}", "x-model-version": "2.0"})
    assert set(forced) == {"2.0"}  # the header beats stickiness and weights
    status, body = http("POST", f"{server.url}/v2/models/versioned/versions/1.0/infer",
                        {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]})
    assert status == 200 and body["model_version"] == "1.0"  # and so does a versioned route


def _register(server: Server, version: str) -> None:
    extras: Path = server.extras  # type: ignore[attr-defined]
    response = requests.post(f"{server.url}/models", headers=AUTH, timeout=300, data={
        "url": str(extras / version / "versioned.mar"), "synchronous": "true", "batch_size": "1"})
    assert response.status_code == 200, response.text


def test_shadow_copies_never_slow_the_caller_and_are_dropped_when_behind(server: Server) -> None:
    _register(server, "3.0-slow")  # its handler sleeps 1 s per batch
    status, _ = put_traffic(server, {"weights": {"1.0": 100, "2.0": 0}, "shadow": {"3.0-slow": 100}})
    assert status == 200
    latencies = []
    for i in range(40):
        started = time.monotonic()
        response = requests.post(f"{server.url}/v1/models/versioned:predict", json={"instances": [i]}, timeout=60)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200 and response.json() == {"predictions": [{"version": "1.0"}]}
    assert max(latencies) < 0.5, latencies  # a shadow answer takes 1 s: none was waited for
    counts = http("GET", f"{server.url}/models/versioned/traffic")[1]["versions"]["3.0-slow"]
    assert counts["shadow sent"] >= 1 and counts["shadow dropped"] >= 20, counts
    time.sleep(5)  # the copies in flight finish
    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(requests.get(f"{server.url}/metrics", timeout=30).text)
               for s in f.samples}
    labels = (("model_name", "versioned"), ("model_version", "3.0-slow"))
    assert metrics[("kserve_torchserve_shadow_copies_total", labels + (("result", "dropped"),))] >= 20
    shadow_ok = (("model_name", "versioned"), ("model_version", "3.0-slow"), ("outcome", "2xx"), ("traffic", "shadow"))
    assert metrics[("kserve_torchserve_version_requests_total", shadow_ok)] == counts["shadow sent"]
    assert put_traffic(server, {"weights": {"1.0": 80, "2.0": 20}})[0] == 200
    assert requests.delete(f"{server.url}/models/versioned/3.0-slow", headers=AUTH, timeout=60).status_code == 200


def test_a_failing_canary_rolls_itself_back(server: Server) -> None:
    _register(server, "4.0-flaky")  # fails every second batch
    guard = {"version": "4.0-flaky", "max_error_rate": 0.05, "min_requests": 20, "window_s": 60}
    status, _ = put_traffic(server, {"weights": {"1.0": 50, "4.0-flaky": 50}, "guard": guard})
    assert status == 200
    answers = []
    for i in range(200):
        response = requests.post(f"{server.url}/v1/models/versioned:predict", json={"instances": [i]}, timeout=60)
        answers.append((response.status_code, response.headers.get("x-model-version")))
    traffic = http("GET", f"{server.url}/models/versioned/traffic")[1]
    rolled = traffic["rolled_back"]
    assert rolled["version"] == "4.0-flaky" and rolled["error_rate"] > 0.05 and rolled["at"] > 0
    first_after = next(i for i, (status, _) in enumerate(answers) if status == 500) + 1
    tail = answers[-100:]  # long after the guard tripped: no caller sees the canary's errors
    assert all(status == 200 for status, _ in tail) and all(v == "1.0" for _, v in tail), tail
    assert first_after < 100
    assert "canary version 4.0-flaky rolled back" in server.log()
    scrape = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'kserve_torchserve_canary_rollbacks_total{model_name="versioned",model_version="4.0-flaky"} 1.0' in scrape
    # The split refuses to lose a version that takes traffic; a new PUT clears the rollback.
    response = requests.delete(f"{server.url}/models/versioned/4.0-flaky", headers=AUTH, timeout=60)
    assert response.status_code == 409 and "traffic split" in response.json()["message"]
    status, body = put_traffic(server, {"weights": {"1.0": 80, "2.0": 20}})
    assert status == 200 and body["rolled_back"] is None
    assert requests.delete(f"{server.url}/models/versioned/4.0-flaky", headers=AUTH, timeout=60).status_code == 200


def test_metrics_move_by_version_and_outcome(server: Server) -> None:
    def counts() -> dict[tuple[str, str], float]:
        text = requests.get(f"{server.url}/metrics", timeout=30).text
        return {(s.labels["model_version"], s.labels["outcome"]): s.value
                for f in text_string_to_metric_families(text) if f.name == "kserve_torchserve_version_requests"
                for s in f.samples if s.name.endswith("_total") and s.labels.get("traffic") == "primary"
                and s.labels["model_name"] == "versioned"}

    before = counts()
    v1_versions(server, 30, headers=lambda i: {"x-model-version": "2.0"})
    response = requests.post(f"{server.url}/v1/models/versioned:predict", json={"instances": [{"fail": True}]},
                             headers={"x-model-version": "1.0"}, timeout=60)
    assert response.status_code == 500
    after = counts()
    assert after[("2.0", "2xx")] - before.get(("2.0", "2xx"), 0) == 30
    assert after[("1.0", "5xx")] - before.get(("1.0", "5xx"), 0) == 1
    families = {f.name: f.type for f in text_string_to_metric_families(
        requests.get(f"{server.url}/metrics", timeout=30).text)}
    assert families["kserve_torchserve_version_request_seconds"] == "histogram"


def test_bad_splits_are_refused_with_the_reason(server: Server) -> None:
    for body, fragment in [({"weights": {"1.0": 80, "9.0": 20}}, "'9.0' is not served"),
                           ({"weights": {"1.0": -10, "2.0": 110}}, "integer 0-100"),
                           ({"weights": {"1.0": 70, "2.0": 20}}, "sum to 90")]:
        status, answer = put_traffic(server, body)
        assert status == 400 and fragment in answer["message"], answer
    response = requests.put(f"{server.url}/models/versioned/traffic", json={"weights": {"1.0": 100}}, timeout=30)
    assert response.status_code == 401
    assert http("GET", f"{server.url}/models/versioned/traffic")[1]["weights"] == {"1.0": 80, "2.0": 20}
