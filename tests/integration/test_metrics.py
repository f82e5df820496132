"""One /metrics scrape with KServe's and TorchServe's metrics, custom handler metrics, and logging levels."""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ASSETS, ROOT, Server, build_mar, http

EXAMPLE = ROOT / "examples" / "custom_metrics"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    storage = tmp_path_factory.mktemp("metrics-storage")
    build_mar(EXAMPLE / "handler.py", "custom", storage)
    shutil.copy(EXAMPLE / "metrics.yaml", storage / "metrics.yaml")
    srv = Server(storage, tmp_path_factory.mktemp("metrics-server"))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def scrape(server: Server) -> tuple[str, dict[str, Any]]:
    text = urllib.request.urlopen(f"{server.url}/metrics", timeout=10).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):  # raises on invalid exposition text
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples with these labels (a counter's sample may carry a _total suffix)."""
    return sum(v for (n, ls), v in samples.items()
               if n in (name, f"{name}_total") and all((k, x) in ls for k, x in labels.items()))


def test_one_scrape_holds_kserve_and_torchserve_metrics(server: Server) -> None:
    assert http("POST", f"{server.url}/v1/models/custom:predict", {"instances": [1, 2]})[0] == 200
    text, samples = scrape(server)
    names = {name.removesuffix("_total") for name, _ in samples} | {name for name, _ in samples}
    for expected in ("request_predict_seconds_count",  # KServe's latency histogram, per model
                     "Requests2XX", "Requests4XX", "Requests5XX", "ts_inference_requests_total",
                     "ts_inference_latency_microseconds", "ts_queue_latency_microseconds", "PredictionTime",
                     "HandlerTime", "torchserve_metrics_up"):
        assert expected in names, expected
    assert value(samples, "request_predict_seconds_count", model_name="custom") >= 1
    # TorchServe counts its own requests: one per client request, all instances together
    assert value(samples, "ts_inference_requests_total", model_name="custom") >= 1
    assert value(samples, "ts_inference_latency_microseconds", model_name="custom") > 0
    assert value(samples, "ts_queue_latency_microseconds", model_name="custom") > 0
    assert value(samples, "PredictionTime", ModelName="custom") > 0
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))  # no duplicate # TYPE lines


def test_custom_handler_metrics_show_up(server: Server) -> None:
    _, before = scrape(server)
    assert http("POST", f"{server.url}/v1/models/custom:predict", {"instances": [1, 2, 3]})[0] == 200
    _, after = scrape(server)
    assert value(after, "CustomCounter", ModelName="custom") - value(before, "CustomCounter", ModelName="custom") >= 3
    assert any(name == "CustomTimer" and dict(labels).get("ModelName") == "custom" for name, labels in after)


def test_counters_move_by_good_and_bad_predictions(server: Server) -> None:
    _, before = scrape(server)
    good, bad = 4, 3
    for _ in range(good):
        assert http("POST", f"{server.url}/v1/models/custom:predict", {"instances": [0]})[0] == 200
    # Refused by the codec, by kserve's JSON decoding, and for an unknown model: all counted.
    assert http("POST", f"{server.url}/v1/models/custom:predict", {"instances": []})[0] == 400
    assert http("POST", f"{server.url}/v1/models/custom:predict", raw=b'{"instances": [')[0] == 400
    assert http("POST", f"{server.url}/v1/models/nope:predict", {"instances": [0]})[0] == 404
    _, after = scrape(server)
    assert value(after, "Requests2XX") - value(before, "Requests2XX") == good
    assert value(after, "Requests4XX") - value(before, "Requests4XX") == bad


def test_scrape_survives_torchserve_being_down(server: Server) -> None:
    os.kill(server.java_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    samples: dict[Any, float] = {}
    while time.monotonic() < deadline:
        _, samples = scrape(server)
        if value(samples, "torchserve_metrics_up") == 0:
            break
        time.sleep(0.2)
    assert value(samples, "torchserve_metrics_up") == 0
    assert any(name == "request_predict_seconds_count" for name, _ in samples)  # KServe's still there
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and http("GET", f"{server.url}/v2/health/ready")[0] == 200:
        time.sleep(0.1)  # the supervisor notices the crash
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and http("GET", f"{server.url}/v2/health/ready")[0] != 200:
        time.sleep(0.5)
    assert value(scrape(server)[1], "torchserve_metrics_up") == 1


def grpc_infer(port: int, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)


def test_debug_logs_per_request_lines_and_info_does_not(tmp_path: Path) -> None:
    store = tmp_path / "store"
    build_mar(ASSETS / "sleepy_handler.py", "sleepy", store)
    lines: dict[str, list[str]] = {}
    for level in ("INFO", "DEBUG"):
        (tmp_path / level.lower()).mkdir()
        srv = Server(store, tmp_path / level.lower(), env={"TS_LOG_LEVEL": level})
        try:
            srv.wait_ready()
            before = len(srv.log().splitlines())
            for i in range(5):
                headers = {"x-request-id": f"req-{level}-{i}"}
                assert http("POST", f"{srv.url}/v1/models/sleepy:predict", {"instances": [{"i": i}]},
                            headers=headers)[0] == 200
            answer = grpc_infer(srv.grpc_port, pb.ModelInferRequest(model_name="sleepy", inputs=[
                pb.ModelInferRequest.InferInputTensor(name="data", datatype="BYTES", shape=[1],
                                                      contents=pb.InferTensorContents(bytes_contents=[b"hi"]))]))
            assert list(answer.outputs[0].contents.bytes_contents) == [b'{"echo":{"data":"hi"}}']
            time.sleep(1)
            lines[level] = srv.log().splitlines()[before:]
        finally:
            srv.stop()
    assert lines["INFO"] == [], lines["INFO"]  # no line per request by default
    debug = "\n".join(lines["DEBUG"])
    assert "requestId: req-DEBUG-3" in debug  # request ids in DEBUG
    assert "grpc method: /inference.GRPCInferenceService/ModelInfer" in debug  # kserve's gRPC line too
    assert "torchserve: [DEBUG]" in debug  # TorchServe's own debug lines, forwarded with a prefix

