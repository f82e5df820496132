"""The real server with the real TorchServe behind it, over real sockets."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from tests.helpers import Server, http, running

pytestmark = pytest.mark.integration
CHUNK = 90  # instances per request: below TorchServe's job queue (100)


@pytest.fixture(scope="module")
def server(digits: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(Server(digits["store"], tmp_path_factory.mktemp("serving"), model_name="digits",
                        env={"TS_MAX_REQUEST_SIZE": "65536"})) as srv:
        yield srv


def _v1(server: Server, instances: list[Any], model: str = "digits") -> tuple[int, Any]:
    return http("POST", f"{server.url}/v1/models/{model}:predict", {"instances": instances})


def test_v1_predictions_equal_the_in_process_model(server: Server, digits: dict[str, Any],
                                                   digits_reference: list[list[float]]) -> None:
    instances = digits["instances"]
    predictions: list[list[float]] = []
    for start in range(0, len(instances), CHUNK):
        status, body = _v1(server, instances[start:start + CHUNK])
        assert status == 200, body
        predictions += body["predictions"]
    np.testing.assert_allclose(predictions, digits_reference, atol=1e-6)
    accuracy = np.mean(np.argmax(predictions, axis=1) == np.array(digits["labels"]))
    assert accuracy >= 0.9


def test_v2_rest_fp32_equals_the_in_process_model(server: Server, digits: dict[str, Any],
                                                  digits_reference: list[list[float]]) -> None:
    batch = digits["instances"][:CHUNK]
    flat = [v for row in batch for v in row]
    status, body = http("POST", f"{server.url}/v2/models/digits/infer",
                        {"id": "req-1", "inputs": [{"name": "pixels", "shape": [len(batch), 64],
                                                    "datatype": "FP32", "data": flat}]})
    assert status == 200, body
    output = body["outputs"][0]
    assert body["id"] == "req-1" and body["model_name"] == "digits"
    assert output["datatype"] == "FP32" and output["shape"] == [len(batch), 10]
    np.testing.assert_allclose(np.array(output["data"]).reshape(len(batch), 10), digits_reference[:CHUNK], atol=1e-6)


def test_v2_rest_int64_and_bytes_inputs(server: Server, digits: dict[str, Any],
                                        digits_reference: list[list[float]]) -> None:
    rows = [[int(v) for v in row] for row in digits["instances"][:3]]
    status, body = http("POST", f"{server.url}/v2/models/digits/infer",
                        {"inputs": [{"name": "p", "shape": [3, 64], "datatype": "INT64",
                                     "data": [v for row in rows for v in row]}]})
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(3, 10), digits_reference[:3], atol=1e-6)
    texts = [str(row) for row in rows]  # BYTES: each element is the JSON text of one image
    status, body = http("POST", f"{server.url}/v2/models/digits/infer",
                        {"inputs": [{"name": "p", "shape": [3], "datatype": "BYTES", "data": texts}]})
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(3, 10), digits_reference[:3], atol=1e-6)


def _infer_request(batch: list[list[float]]) -> InferRequest:
    tensor = InferInput(name="pixels", shape=[len(batch), 64], datatype="FP32")
    tensor.set_data_from_numpy(np.array(batch, dtype=np.float32), binary_data=False)
    return InferRequest(model_name="digits", infer_inputs=[tensor], request_id="grpc-1")


def test_v2_grpc_with_kserve_client(server: Server, digits: dict[str, Any],
                                    digits_reference: list[list[float]]) -> None:
    async def call() -> Any:
        async with InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=60, retries=0) as client:
            assert await client.is_server_ready()
            assert await client.is_model_ready("digits")
            return await client.infer(_infer_request(digits["instances"][:10]))

    response = asyncio.run(call())
    np.testing.assert_allclose(response.outputs[0].as_numpy(), digits_reference[:10], atol=1e-6)


def test_v2_grpc_unknown_model_is_not_found(server: Server) -> None:
    async def call() -> None:
        async with InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=30, retries=0) as client:
            request = _infer_request([[0.0] * 64])
            request.model_name = "nope"
            await client.infer(request)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(call())
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_kserve_rest_client_v1_and_v2(server: Server, digits: dict[str, Any],
                                      digits_reference: list[list[float]]) -> None:
    async def call() -> tuple[Any, Any]:
        async with InferenceRESTClient(RESTConfig(protocol="v1", retries=0, timeout=60)) as v1:
            first = await v1.infer(server.url, {"instances": digits["instances"][:5]}, model_name="digits")
        async with InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60)) as v2:
            second = await v2.infer(server.url, _infer_request(digits["instances"][:5]), model_name="digits")
        return first, second

    first, second = asyncio.run(call())
    np.testing.assert_allclose(first["predictions"], digits_reference[:5], atol=1e-6)
    np.testing.assert_allclose(second.outputs[0].as_numpy(), digits_reference[:5], atol=1e-6)


def test_model_and_health_endpoints(server: Server) -> None:
    assert http("GET", f"{server.url}/v1/models") == (200, {"models": ["digits"]})
    assert http("GET", f"{server.url}/v1/models/digits") == (200, {"name": "digits", "ready": True})
    assert http("GET", f"{server.url}/v2/health/live")[0] == 200
    assert http("GET", f"{server.url}/v2/health/ready") == (200, {"ready": True})
    assert http("GET", f"{server.url}/v2/models/digits/ready") == (200, {"name": "digits", "ready": True})
    status, meta = http("GET", f"{server.url}/v2/models/digits")
    assert status == 200 and meta["name"] == "digits"


def test_unknown_model_is_404(server: Server) -> None:
    status, body = _v1(server, [[0] * 64], model="nope")
    assert status == 404 and "nope" in body["error"]
    status, body = http("POST", f"{server.url}/v2/models/nope/infer",
                        {"inputs": [{"name": "p", "shape": [1], "datatype": "INT64", "data": [1]}]})
    assert status == 404 and "nope" in body["error"]
    assert http("GET", f"{server.url}/v1/models/nope")[0] == 404


def test_malformed_json_is_400_with_a_message(server: Server) -> None:
    status, body = http("POST", f"{server.url}/v1/models/digits:predict", raw=b'{"instances": [1, 2')
    assert status == 400 and "Unrecognized request format" in body["error"]
    status, body = http("POST", f"{server.url}/v1/models/digits:predict", {"instance": []})
    assert status == 400 and '"instances"' in body["error"]


def test_bad_instance_is_400_naming_the_expected_form(server: Server) -> None:
    status, body = _v1(server, [[1, 2, 3]])
    assert status == 400
    assert "expected a list of 64 numbers" in body["error"]


def test_more_instances_than_the_queue_holds_travel_as_one_request(server: Server) -> None:
    """TorchServe's queue (100 jobs) holds requests: all instances of one travel as one job."""
    status, body = _v1(server, [[0] * 64] * 101)
    assert status == 200 and len(body["predictions"]) == 101


def test_an_instance_over_torchserves_request_size_is_413(server: Server) -> None:
    status, body = _v1(server, ["x" * 70000])
    assert status == 413 and "TS_MAX_REQUEST_SIZE" in body["error"] and "65536" in body["error"]
    assert _v1(server, [[0.0] * 64])[0] == 200  # and the server serves on


def test_concurrent_clients_each_get_their_own_answers(server: Server, digits: dict[str, Any],
                                                       digits_reference: list[list[float]]) -> None:
    def one(i: int) -> tuple[int, Any]:
        return i, _v1(server, [digits["instances"][i], digits["instances"][i + 100]])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(40)))
    for i, (status, body) in results:
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"], [digits_reference[i], digits_reference[i + 100]], atol=1e-6)
