from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError
from kserve.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady, UnsupportedProtocol
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.serving import errors


def _pydantic(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as failed:
        InferenceRequest.model_validate_json(body)
    return failed.value


@pytest.mark.parametrize("exc,status,message", [
    (UpstreamError(504, "model m did not answer in time"), 504, "model m did not answer in time"),
    (InvalidInput("input 'x' is bad"), 400, "input 'x' is bad"),
    (ModelNotFound("m"), 404, "Model with name m does not exist."),
    (ModelNotReady("m"), 503, "Model with name m is not ready."),
    (ServerNotReady(), 503, "Server is not ready."),
    (NotImplementedError("no explain"), 501, "no explain"),
    (UnsupportedProtocol("v9"), 501, "Unsupported protocol v9."),
    (InferenceError("failed"), 500, "failed"),
    (HTTPException(405, "Method Not Allowed"), 405, "Method Not Allowed"),
    (HTTPException(400, "There was an error parsing the body"), 400,
     "request body is not valid JSON: not UTF-8, or nested too deep"),
])
def test_every_known_failure_has_its_status_and_message(exc: Exception, status: int, message: str) -> None:
    assert errors.status_and_message(exc) == (status, message, False)


def test_anything_else_is_a_500_without_its_text_and_marked_a_bug() -> None:
    assert errors.status_and_message(KeyError("secret internals")) == (
        500, "internal error (KeyError); the server log has the details", True)


def test_a_v2_body_failing_the_schema_is_one_line_where_it_failed_never_the_input() -> None:
    marker = "MARKER" * 1000
    failed = _pydantic(json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": marker}]}).encode())
    status, message, _ = errors.status_and_message(failed)
    assert (status, message) == (400, "invalid v2 request: inputs[0].data: Input should be a valid array")
    failed = _pydantic(json.dumps({"inputs": [{"name": 1, "shape": ["a"], "datatype": "FP32", "data": [1]}]}).encode())
    assert errors.status_and_message(failed)[1] == ("invalid v2 request: inputs[0].name: Input should be a valid "
                                                    "string (and 1 more problems)")
    assert errors.status_and_message(_pydantic(b'{"inputs": ['))[1].startswith("request body is not valid JSON: ")


def test_fastapis_validation_error_reads_the_same_without_its_union_noise() -> None:
    # What kserve's v2 endpoint raises: the body tried as an InferenceRequest and as raw bytes.
    failed = RequestValidationError([
        {"type": "list_type", "loc": ("body", "InferenceRequest", "inputs", 0, "data"),
         "msg": "Input should be a valid array", "input": "MARKER"},
        {"type": "bytes_type", "loc": ("body", "bytes"), "msg": "Input should be a valid bytes", "input": {}},
    ], body={"inputs": [{"data": "MARKER"}]})
    assert errors.status_and_message(failed) == (400, "invalid v2 request: inputs[0].data: Input should be a valid "
                                                      "array", False)
    v1_body = RequestValidationError([{"type": "missing", "loc": ("body", "InferenceRequest", "inputs"),
                                       "msg": "Field required"}], body={"instances": [[1]]})
    assert "this is a v1 body" in errors.status_and_message(v1_body)[1]
    unparsed = RequestValidationError([{"type": "json_invalid", "loc": ("body", 14), "msg": "JSON decode error",
                                        "ctx": {"error": "Expecting value"}}])
    assert errors.status_and_message(unparsed)[1] == "request body is not valid JSON: Expecting value"


def test_an_error_answer_is_one_format_and_small() -> None:
    body = errors.error_body("x" * 100_000)
    assert len(body) < 4096 and list(json.loads(body)) == ["error"]
    scope = {"type": "http", "method": "POST", "path": "/v1/models/m:predict", "headers": []}
    response = errors.error_response(scope, UpstreamError(503, "queue full", retry_after_s=1))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert json.loads(bytes(response.body)) == {"error": "queue full"}
    assert response.headers["content-type"] == "application/json"


def test_an_unknown_model_is_named_only_when_the_name_is_plain() -> None:
    from kserve.errors import ModelNotFound

    assert errors.status_and_message(ModelNotFound("digits"))[:2] == (404, "Model with name digits does not exist.")
    assert errors.status_and_message(ModelNotFound("digits (version 9.9)"))[1].endswith("(version 9.9) does not exist.")
    assert errors.status_and_message(ModelNotFound("<img src=x>"))[1] == "Model with that name does not exist."
