"""v2 REST bodies without kserve's pydantic models, for the common request; anything else is kserve's.

Why: py-spy on our process under v2 REST load (W1, batching on) put about a quarter of its
CPU in kserve's request and response models: ``InferenceRequest.model_validate_json``,
``InferRequest.from_inference_request``, ``DataPlane.encode`` -> ``InferResponse.to_rest``
(which converts every output to numpy and back a second time) and the response's pydantic
validate and dump. For a request that is plainly well formed, all that work checks what
one pass over the parsed JSON can check.

The body is parsed once (``loads``). ``common_request`` takes the common request:
``{"id"?, "inputs": [{"name", "shape", "datatype", "data"}, ...]}``, every field of the type
kserve's schema wants, without coercion. It returns the same ``InferRequest`` kserve's decode
would, or None for anything else (bad JSON, missing or extra fields, parameters, requested
outputs, FP16, a value pydantic would coerce or refuse), which ``validated`` then checks with
kserve's model as FastAPI would: its answers and errors stay kserve's, word for word.
``render`` writes the answer to such a request as kserve's endpoint serializes it (the same
keys in the same order: tests/unit/serving/test_rest_fastpath.py compares the bytes), or
returns None when the answer needs kserve's encoder (parameters, binary outputs).
"""

from __future__ import annotations

from typing import Any

import orjson
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse
from kserve.protocol.rest.v2_datamodels import InferenceRequest

_REQUEST_KEYS = ({"inputs"}, {"id", "inputs"})
_INPUT_KEYS = {"name", "shape", "datatype", "data"}


NOT_JSON: Any = object()  # what ``loads`` returns for a body that is not JSON orjson reads


def loads(body: bytes) -> Any:
    """The parsed body, or NOT_JSON: parsed once, for ``common_request`` and, failing that, ``validated``."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return NOT_JSON


def common_request(document: Any, model_name: str) -> InferRequest | None:
    """The request as kserve's decode makes it, when the parsed body is of the common form; else None."""
    if type(document) is not dict or document.keys() not in _REQUEST_KEYS:
        return None
    request_id, inputs = document.get("id"), document["inputs"]
    if (request_id is not None and type(request_id) is not str) or type(inputs) is not list or not inputs:
        return None
    tensors = []
    for tensor in inputs:
        if type(tensor) is not dict or tensor.keys() != _INPUT_KEYS:
            return None
        name, shape, datatype, data = tensor["name"], tensor["shape"], tensor["datatype"], tensor["data"]
        if type(name) is not str or type(datatype) is not str or type(data) is not list or type(shape) is not list:
            return None
        if any(type(d) is not int for d in shape) or datatype.upper() == "FP16":  # kserve refuses FP16 as JSON
            return None
        # What InferRequest.from_inference_request builds: parameters {} per input, none for the request.
        tensors.append(InferInput(name=name, shape=shape, datatype=datatype, data=data, parameters={}))
    return InferRequest(model_name=model_name, infer_inputs=tensors, request_id=request_id)


def validated(body: bytes, document: Any) -> InferenceRequest:
    """kserve's request model over a body ``common_request`` did not take, checked as FastAPI checks it:
    the parsed body validated in Python mode (whose words kserve's endpoint gives: "a valid list", not
    "a valid array"); a body orjson could not parse, in JSON mode, which says where its syntax breaks.
    Raises pydantic's ValidationError."""
    if document is NOT_JSON:
        return InferenceRequest.model_validate_json(body)
    return InferenceRequest.model_validate(document, from_attributes=True)  # as FastAPI does for a body


def render(response: InferResponse) -> bytes | None:
    """kserve's REST body for ``response``, when its outputs hold JSON data and nothing else; else None."""
    if response.parameters or response._use_binary_outputs or response._requested_outputs:
        return None
    outputs: list[dict[str, Any]] = []
    for output in response.outputs:
        if output.parameters or type(output.data) is not list or output.datatype == "FP16":
            return None
        outputs.append({"name": output.name, "shape": output.shape, "datatype": output.datatype,
                        "parameters": None, "data": output.data})
    # InferenceResponse's fields in their order, as model_dump(mode="json") gives them to ORJSONResponse.
    return orjson.dumps({"model_name": response.model_name, "model_version": response.model_version,
                         "id": response.id, "parameters": None, "outputs": outputs})
