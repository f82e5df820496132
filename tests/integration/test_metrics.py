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

from tests.helpers import ASSETS, ROOT, Server, build_mar, http, running, undeclared

EXAMPLE = ROOT / "examples" / "custom_metrics"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, Any]) -> Iterator[Server]:
    """Two models: the custom metrics example, and digits (v1, v2 REST and gRPC with real answers)."""
    storage = tmp_path_factory.mktemp("metrics-storage")
    build_mar(EXAMPLE / "handler.py", "custom", storage)
    shutil.copy(EXAMPLE / "metrics.yaml", storage / "metrics.yaml")
    shutil.copy(digits["store"] / "digits.mar", storage / "digits.mar")
    with running(Server(storage, tmp_path_factory.mktemp("metrics-server"))) as srv:
        yield srv


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




def test_every_family_parses_with_its_declared_type(server: Server) -> None:
    """Issue #16 row 20: KServe's, ours, TorchServe's and a handler's custom metrics, in one scrape."""
    assert http("POST", f"{server.url}/v1/models/custom:predict", {"instances": [1]})[0] == 200
    assert http("POST", f"{server.url}/v1/models/nope:predict", {"instances": [1]})[0] == 404
    text, _ = scrape(server)
    assert undeclared(text) == []
    declared = {words[2]: words[3] for words in (line.split() for line in text.splitlines())
                if words[:2] == ["#", "TYPE"]}
    for family in text_string_to_metric_families(text):
        # prometheus_client names a counter family without the _total its # TYPE line may carry
        kind = declared.get(family.name) or declared.get(f"{family.name}_total")
        assert family.type == kind and kind not in (None, "untyped"), (family.name, family.type)
    # TorchServe's names, as TorchServe writes them
    for name in ("Requests2XX", "Requests4XX", "Requests5XX", "CustomCounter", "ts_inference_requests_total",
                 "ts_inference_latency_microseconds", "ts_queue_latency_microseconds"):
        assert declared.get(name) == "counter", name


def _v2(data: list[float], shape: list[int]) -> dict[str, Any]:
    return {"inputs": [{"name": "pixels", "shape": shape, "datatype": "FP32", "data": data}]}


def _grpc(port: int, data: list[float], shape: list[int], model: str = "digits") -> str:
    tensor = pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=shape,
                                                   contents=pb.InferTensorContents(fp32_contents=data))
    try:
        grpc_infer(port, pb.ModelInferRequest(model_name=model, inputs=[tensor]))
        return "OK"
    except grpc.RpcError as err:
        return err.code().name  # type: ignore[no-any-return]


def test_counters_move_by_exactly_the_requests_sent(server: Server, digits: dict[str, Any]) -> None:
    """Issue #16 row 20: good and bad requests over v1, v2 REST and gRPC, each counted where it belongs.

    Bad ones of three kinds: an unknown model (refused at the door), a v2 shape that does not fit
    its data (refused by the codec, before TorchServe), and an instance the handler rejects (400
    from inside TorchServe). Requests2XX/4XX count REST requests; kserve's latency histogram and
    our per-version counter every request that reached the model; TorchServe's every request
    that reached TorchServe.
    """
    good, short = [float(v) for v in digits["instances"][0]], [1.0, 2.0]
    v1, v2 = f"{server.url}/v1/models/digits:predict", f"{server.url}/v2/models/digits/infer"
    unknown_v1, unknown_v2 = f"{server.url}/v1/models/nope:predict", f"{server.url}/v2/models/nope/infer"
    _, before = scrape(server)
    answers = (
        [http("POST", v1, {"instances": [good]})[0] for _ in range(3)]              # good
        + [http("POST", v1, {"instances": [short]})[0] for _ in range(2)]          # handler rejects
        + [http("POST", unknown_v1, {"instances": [good]})[0]]                     # unknown model
        + [http("POST", v2, _v2(good, [1, 64]))[0] for _ in range(4)]              # good
        + [http("POST", v2, _v2(good, [1, 65]))[0] for _ in range(2)]              # shape does not fit
        + [http("POST", v2, _v2(short, [1, 2]))[0] for _ in range(2)]              # handler rejects
        + [http("POST", unknown_v2, _v2(good, [1, 64]))[0]]                        # unknown model
    )
    assert answers == [200] * 3 + [400] * 2 + [404] + [200] * 4 + [400] * 4 + [404], answers
    grpc_answers = ([_grpc(server.grpc_port, good, [1, 64]) for _ in range(5)]
                    + [_grpc(server.grpc_port, good, [1, 65])]
                    + [_grpc(server.grpc_port, short, [1, 2]) for _ in range(2)]
                    + [_grpc(server.grpc_port, good, [1, 64], model="nope")])
    assert grpc_answers == ["OK"] * 5 + ["INVALID_ARGUMENT"] * 3 + ["NOT_FOUND"], grpc_answers
    good_n = 3 + 4 + 5
    expected = {
        ("Requests2XX", ()): 3 + 4,  # REST only: gRPC calls have no HTTP status
        ("Requests4XX", ()): 3 + 5,
        ("request_predict_seconds_count", (("model_name", "digits"),)): good_n + 2 + 4 + 3,
        ("kserve_torchserve_version_requests", (("model_name", "digits"), ("outcome", "2xx"))): good_n,
        ("kserve_torchserve_version_requests", (("model_name", "digits"), ("outcome", "4xx"))): 2 + 4 + 3,
        ("kserve_torchserve_version_requests", (("model_name", "digits"), ("outcome", "5xx"))): 0,
        ("ts_inference_requests_total", (("model_name", "digits"),)): good_n + 2 + 2 + 2,
    }

    def moved() -> dict[Any, float]:
        after = scrape(server)[1]
        return {key: value(after, key[0], **dict(key[1])) - value(before, key[0], **dict(key[1]))
                for key in expected}

    deadline = time.monotonic() + 5  # TorchServe counts a request as it answers it: let it catch up
    while (deltas := moved()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert deltas == expected


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

