"""KServe v1/v2 payloads <-> TorchServe rows.

A row is one TorchServe request: input name -> bytes (one multipart part each). TorchServe
batches requests, so every v1 instance and every v2 row (first dimension) becomes
its own row; the handler sees ``{"data": ...}`` like any stock TorchServe handler.

Values travel as bytes (application/octet-stream parts, so the worker never guesses a
content type, and the same bytes TorchServe's gRPC API would carry):
- bytes (v2 BYTES elements, v1 ``{"b64": "..."}``) go as they are;
- a string that is the base64 of an image (PNG, JPEG, GIF, BMP, TIFF, WebP: the
  PyTorch runtime documentation's ``{"data": "iVBORw0KGgo..."}``) goes as the image's bytes,
  which is what TorchServe's vision handlers open;
- any other string goes as its UTF-8 text;
- anything else (numbers, lists, dicts, numpy rows of a v2 tensor) goes as compact JSON.
Every JSON encode and decode here is orjson's (kserve's own JSON library): C, no Python
work per element, about 20x the stdlib's speed on a 784-float instance.
A dict instance maps its keys to inputs of the same names, so
``{"data": ..., "extra": ...}`` reaches the handler as those two keys.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any, Sequence

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

Row = dict[str, bytes]

# numpy rows of v2 tensors serialise without a Python list; dict keys may be numbers.
_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# Base64 of each format's magic bytes. A string starting so that is also valid base64
# is an image: text (with spaces, punctuation) is never valid base64 of PNG/JPEG magic.
_IMAGE_B64_PREFIXES = ("iVBORw0KGgo", "/9j/", "R0lGODdh", "R0lGODlh", "Qk", "SUkqAA", "TU0AKg", "UklGR")
_MIN_IMAGE_B64 = 24


def image_bytes(text: str) -> bytes | None:
    """The image a base64 string encodes, or None when it is not one."""
    if len(text) < _MIN_IMAGE_B64 or not text.startswith(_IMAGE_B64_PREFIXES):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def encode_value(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        image = image_bytes(value)
        return image if image is not None else value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise InvalidInput('"b64" value is not valid base64: encode the bytes with standard base64') from None
    try:
        return orjson.dumps(value, option=_ORJSON)
    except TypeError:  # e.g. an integer over 64 bits: what the stdlib writes
        return json.dumps(value, separators=(",", ":"), default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"cannot encode a {type(value).__name__} as JSON")


def input_name(name: str) -> str:
    """A name that becomes a multipart part name (backend.http_pool.Multipart): refused if it could end the header."""
    if '"' in name or "\r" in name or "\n" in name:
        raise InvalidInput(f"input name {name!r} contains a quote or a line break: rename the input")
    return name


def row_from_instance(instance: Any) -> Row:
    if isinstance(instance, dict) and instance and set(instance) != {"b64"}:
        return {input_name(str(key)): encode_value(value) for key, value in instance.items()}
    return {"data": encode_value(instance)}


def v1_rows(body: Any) -> list[Row]:
    """Rows of a v1 ``{"instances": [...]}`` request."""
    if isinstance(body, (bytes, str)):
        # kserve hands over the raw body when the content type is not JSON (curl -d sends
        # form encoding by default); accept it when it is JSON all the same.
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput(
                'request body is not JSON: send {"instances": [...]} with Content-Type: application/json'
            ) from None
    if not isinstance(body, dict):
        raise InvalidInput('v1 request must be a JSON object like {"instances": [...]}')
    instances = body.get("instances")
    if instances is None and "inputs" in body:
        instances = body["inputs"]  # v1's columnar alias, as in TF Serving
    if not isinstance(instances, list):
        raise InvalidInput(
            f'v1 request needs "instances": a list with one entry per input; got keys {sorted(body)}'
        )
    if not instances:
        raise InvalidInput('"instances" is empty: send at least one instance')
    return [row_from_instance(instance) for instance in instances]


def _split_rows(array: np.ndarray, name: str, datatype: str) -> list[Any]:
    if array.ndim == 0:
        raise InvalidInput(f"input {name} has shape []: v2 inputs need a first (batch) dimension")
    rows: list[Any] = []
    for item in array:
        if datatype == "BYTES":
            # One BYTES element per row is the common case (an image, a text); keep it raw.
            flat = np.asarray(item, dtype=object).reshape(-1)
            rows.append(flat[0] if flat.size == 1 else [encode_value(b).decode("utf-8", "replace") for b in flat])
        else:
            rows.append(item)
    return rows


def v2_rows(request: InferRequest) -> list[Row]:
    """Rows of a v2 request: row i holds element i of every input's first dimension."""
    if not request.inputs:
        raise InvalidInput("v2 request has no inputs")
    columns: list[tuple[str, list[Any]]] = []
    for tensor in request.inputs:
        try:
            array = tensor.as_numpy()
        except Exception as exc:  # kserve raises plain exceptions for bad shapes/data
            raise InvalidInput(f"input {tensor.name}: {exc}") from None
        columns.append((tensor.name, _split_rows(array, tensor.name, tensor.datatype)))
    sizes = {len(values) for _, values in columns}
    if len(sizes) != 1:
        raise InvalidInput(
            f"v2 inputs disagree on the batch (first) dimension: "
            f"{ {name: len(values) for name, values in columns} }"
        )
    if len(columns) == 1:
        return [{"data": encode_value(value)} for value in columns[0][1]]
    for name, _ in columns:
        input_name(name)
    return [{name: encode_value(values[i]) for name, values in columns} for i in range(sizes.pop())]


def decode_prediction(raw: bytes) -> Any:
    """A handler's answer for one row: JSON when it is JSON, else text, else base64 bytes."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(raw).decode("ascii")}


def v1_response(predictions: Sequence[Any]) -> dict[str, Any]:
    return {"predictions": list(predictions)}


def _numeric_output(predictions: Sequence[Any], float_type: str, binary: bool) -> InferOutput | None:
    try:
        array = np.asarray(predictions)
    except ValueError:  # ragged
        return None
    dtype: type[np.generic]
    if array.dtype.kind == "f":
        dtype, datatype = (np.float64, "FP64") if float_type == "FP64" else (np.float32, "FP32")
    elif array.dtype.kind in "iu":
        dtype, datatype = np.int64, "INT64"
    elif array.dtype.kind == "b":
        dtype, datatype = np.bool_, "BOOL"
    else:
        return None
    output = InferOutput(name="output-0", shape=list(array.shape), datatype=datatype)
    output.set_data_from_numpy(array.astype(dtype), binary_data=binary)
    return output


def v2_response(
    request: InferRequest, model_name: str, predictions: Sequence[Any], model_version: str | None = None
) -> InferResponse:
    """Numeric predictions become one FP32/FP64/INT64/BOOL tensor; anything else a BYTES tensor of JSON/text."""
    float_type = "FP64" if any(t.datatype == "FP64" for t in request.inputs) else "FP32"
    binary = bool(request.use_binary_outputs)  # the client asked for the binary data extension
    output = _numeric_output(predictions, float_type, binary)
    if output is None:
        items = [p.encode("utf-8") if isinstance(p, str) else encode_value(p) for p in predictions]
        output = InferOutput(name="output-0", shape=[len(items)], datatype="BYTES")
        output.set_data_from_numpy(np.array(items, dtype=object), binary_data=binary)
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),  # as kserve does for requests without an id
        model_name=model_name,
        model_version=model_version,  # which version answered (the v2 protocol's field for it)
        infer_outputs=[output],
        from_grpc=request.from_grpc,
    )
