"""v2_json takes the common v2 body and leaves everything else to kserve's models.

That its answers equal kserve's, byte for byte, is test_rest_fastpath.py's; here: which bodies it
takes, that what it builds is what kserve's decode builds, and that the fast path really uses it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from kserve_torchserve.serving import v2_json
from kserve_torchserve.serving.rest_fastpath import FastPath
from tests.unit.serving.test_rest_fastpath import _app

X = {"name": "x", "shape": [1, 2], "datatype": "fp32", "data": [[1, 2.5]]}


def test_the_common_body_becomes_the_request_kserve_would_build() -> None:
    body = json.dumps({"id": "r", "inputs": [X, {**X, "name": "y", "datatype": "BYTES", "data": ["a"]}]}).encode()
    ours = v2_json.common_request(v2_json.loads(body), "m")
    theirs = InferRequest.from_inference_request(InferenceRequest.model_validate_json(body), "m")
    assert ours is not None
    assert (ours.id, ours.model_name, ours.parameters, ours.request_outputs, ours.model_version, ours.from_grpc) == \
        (theirs.id, theirs.model_name, theirs.parameters, theirs.request_outputs, theirs.model_version,
         theirs.from_grpc)
    for mine, kserves in zip(ours.inputs, theirs.inputs):
        assert vars(mine) == vars(kserves)
    no_id = json.dumps({"inputs": [X]}).encode()
    assert v2_json.common_request(v2_json.loads(no_id), "m") is not None  # no id: kserve makes one later


@pytest.mark.parametrize("body", [
    b"not json", b"[1]", b'{"inputs": []}', b'{"inputs": {}}', b'{"id": 1, "inputs": []}',
    json.dumps({"inputs": [X], "parameters": {}}).encode(),
    json.dumps({"inputs": [X], "outputs": [{"name": "o"}]}).encode(),
    json.dumps({"inputs": [X], "other": 1}).encode(),
    json.dumps({"inputs": [{**X, "parameters": {}}]}).encode(),
    json.dumps({"inputs": [{k: v for k, v in X.items() if k != "data"}]}).encode(),
    json.dumps({"inputs": [{**X, "shape": [1.0, 2]}]}).encode(),
    json.dumps({"inputs": [{**X, "shape": [True, 2]}]}).encode(),
    json.dumps({"inputs": [{**X, "shape": "1,2"}]}).encode(),
    json.dumps({"inputs": [{**X, "name": 3}]}).encode(),
    json.dumps({"inputs": [{**X, "datatype": None}]}).encode(),
    json.dumps({"inputs": [{**X, "data": "12"}]}).encode(),
    json.dumps({"inputs": [{**X, "datatype": "fp16"}]}).encode(),
    json.dumps({"inputs": ["x"]}).encode(),
])
def test_anything_else_is_left_to_kserve(body: bytes) -> None:
    assert v2_json.common_request(v2_json.loads(body), "m") is None


def _response(**changes: Any) -> InferResponse:
    output = InferOutput(name="output-0", shape=[1], datatype="FP32", data=[0.5])
    response = InferResponse(response_id="r", model_name="m", infer_outputs=[output], model_version="1")
    for name, value in changes.items():
        setattr(response, name, value)
    return response


def test_answers_that_need_kserves_encoder_are_left_to_it() -> None:
    assert v2_json.render(_response()) == (b'{"model_name":"m","model_version":"1","id":"r","parameters":null,'
                                           b'"outputs":[{"name":"output-0","shape":[1],"datatype":"FP32",'
                                           b'"parameters":null,"data":[0.5]}]}')
    assert v2_json.render(_response(parameters={"a": 1})) is None
    assert v2_json.render(_response(_use_binary_outputs=True)) is None
    with_parameters = _response()
    with_parameters.outputs[0].parameters = {"binary_data_size": 4}
    assert v2_json.render(with_parameters) is None
    as_array = _response()
    as_array.outputs[0]._data = None
    assert v2_json.render(as_array) is None


async def test_the_fast_path_answers_the_common_body_without_kserves_models(monkeypatch: pytest.MonkeyPatch) -> None:
    app, dataplane = _app()

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("kserve's request model was used")

    monkeypatch.setattr(InferenceRequest, "model_validate_json", refused)
    monkeypatch.setattr(InferenceRequest, "model_validate", refused)
    monkeypatch.setattr(InferResponse, "to_rest", refused)
    body = json.dumps({"id": "r", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                              "data": [1, 2, 3, 4]}]})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=FastPath(app, dataplane)),
                                 base_url="http://t") as client:
        answer = await client.post("/v2/models/m/infer", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == "r" and answer.json()["outputs"][0]["shape"][0] == 2  # a row each


async def test_a_body_left_to_kserve_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app, dataplane = _app()
    parses = []
    loads = v2_json.orjson.loads

    def counted(body: Any) -> Any:
        parses.append(body)
        return loads(body)

    monkeypatch.setattr(v2_json.orjson, "loads", counted)
    body = json.dumps({"parameters": {"a": 1}, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                                           "data": [1]}]})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=FastPath(app, dataplane)),
                                 base_url="http://t") as client:
        answer = await client.post("/v2/models/m/infer", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    # common_request declined it; kserve's model validated the same parse (the model's answers are parsed too)
    assert parses.count(body.encode()) == 1
