"""KServe v1 instances -> TorchServe rows: one definition, for our process and for TorchServe's workers.

A row is one TorchServe request's inputs: name -> bytes. A v1 instance becomes ``{"data": ...}``,
or, for a dict instance, one input per key. Values travel as bytes:
- bytes (v2 BYTES elements, v1 ``{"b64": "..."}``) as they are;
- a string that is the base64 of an image (PNG, JPEG, GIF, BMP, TIFF, WebP: the
  documentation's ``{"data": "iVBORw0KGgo..."}``) as the image's bytes, which is what
  TorchServe's vision handlers open;
- any other string as its UTF-8 text;
- anything else (numbers, lists, dicts) as compact JSON (orjson: C, no Python per element).
Our process uses this through serving/codec.py; our request envelope uses it in the worker for
v1 bodies we forward without parsing them (rows_envelope.py). Errors are RowError, one short
line that names what is wrong and never echoes the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any, Callable

try:  # in our venv always; plain json keeps the worker side working without it
    import orjson

    _dumps: Callable[[Any], bytes] = lambda value: orjson.dumps(  # noqa: E731
        value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=_plain)
    loads: Callable[[bytes], Any] = orjson.loads
    DecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover
    _dumps = lambda value: json.dumps(value, separators=(",", ":"), default=_plain).encode("utf-8")  # noqa: E731
    loads = json.loads
    DecodeError = ValueError

Row = dict[str, bytes]

# Base64 of each format's magic bytes. A string starting so that is also valid base64
# is an image: text (with spaces, punctuation) is never valid base64 of PNG/JPEG magic.
_IMAGE_B64_PREFIXES = ("iVBORw0KGgo", "/9j/", "R0lGODdh", "R0lGODlh", "Qk", "SUkqAA", "TU0AKg", "UklGR")
_MIN_IMAGE_B64 = 24


class RowError(ValueError):
    """An instance that cannot become a row; the message is for the client."""


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot encode a {type(value).__name__} as JSON")


if sys.version_info >= (3, 11):  # chosen once, at import
    def _b64decode(text: str) -> bytes:
        """``base64.b64decode(text, validate=True)``, the same answers and errors, without its copy of
        ``text`` to bytes first (a 200 KB image: 0.57 -> 0.43 ms)."""
        return binascii.a2b_base64(text, strict_mode=True)
else:  # pragma: no cover - strict_mode is 3.11's
    def _b64decode(text: str) -> bytes:
        return base64.b64decode(text, validate=True)


def image_bytes(text: str) -> bytes | None:
    """The image a base64 string encodes, or None when it is not one."""
    if len(text) < _MIN_IMAGE_B64 or not text.startswith(_IMAGE_B64_PREFIXES):
        return None
    try:
        return _b64decode(text)
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
            return _b64decode(value["b64"])
        except ValueError:
            raise RowError('"b64" value is not valid base64: encode the bytes with standard base64') from None
    return to_json(value)


def to_json(value: Any) -> bytes:
    """Compact JSON of any value (numpy arrays and scalars included)."""
    try:
        return _dumps(value)
    except TypeError:  # e.g. an integer over 64 bits: what the stdlib writes
        return json.dumps(value, separators=(",", ":"), default=_plain).encode("utf-8")


def input_name(name: str) -> str:
    """A name that becomes a part name of its own: refused if it could end a header."""
    if '"' in name or "\r" in name or "\n" in name:
        raise RowError("an input name contains a quote or a line break: rename the input")
    return name


def row_from_instance(instance: Any) -> Row:
    if isinstance(instance, dict) and instance and set(instance) != {"b64"}:
        return {input_name(str(key)): encode_value(value) for key, value in instance.items()}
    return {"data": encode_value(instance)}


def v1_instances(body: Any) -> list[Any]:
    """The instances of a parsed v1 body, ``{"instances": [...]}`` (or TF Serving's ``{"inputs": [...]}``)."""
    if not isinstance(body, dict):
        raise RowError('v1 request must be a JSON object like {"instances": [...]}')
    instances = body.get("instances")
    if instances is None and "inputs" in body:
        if _v2_inputs(body["inputs"]):
            raise RowError('this is a v2 body ({"inputs": [{"name", "shape", "datatype", "data"}]}): send it to '
                           '/v2/models/{model}/infer, or send v1\'s {"instances": [...]} here')
        instances = body["inputs"]  # v1's columnar alias, as in TF Serving
    if not isinstance(instances, list):
        raise RowError('v1 request needs "instances": a list with one entry per input')
    if not instances:
        raise RowError('"instances" is empty: send at least one instance')
    return instances


def _v2_inputs(inputs: Any) -> bool:
    """TF Serving's v1 ``{"inputs": [...]}`` holds instances; the v2 protocol's holds tensors, which say their datatype."""
    return isinstance(inputs, list) and any(isinstance(i, dict) and "datatype" in i and "shape" in i for i in inputs)


def v1_rows(raw: bytes) -> list[Row]:
    """The rows of a v1 body as the client sent it (the worker-side path: nothing parsed in our process)."""
    try:
        body = loads(raw)
    except DecodeError as exc:  # kserve's words for a body that is not JSON (where the parser stopped)
        raise RowError(f"Unrecognized request format: {exc}") from None
    return [row_from_instance(instance) for instance in v1_instances(body)]
