"""A v2 input tensor -> a numpy array, or InvalidInput naming the input, what it got and what fits.

kserve's ``InferInput.as_numpy`` converts whatever it is given: ``FLOAT99`` says ``invalid datatype
None``, shape ``[-1, 64]`` is reshaped as ``(64)`` and served, ``"1.5"`` in an FP32 tensor becomes
1.5, 1e40 in FP32 becomes inf (sent on as JSON null), and its errors are numpy's. Here every
input is checked before it is converted, with the same words over REST and gRPC (InvalidInput:
400 / INVALID_ARGUMENT):

- the datatype is one of the v2 protocol's (``DATATYPES``);
- the shape has 1 to ``MAX_DIMS`` dimensions, each at least 1;
- the data holds exactly as many values as the shape says;
- the values fit the datatype: numbers (not strings) for numeric types, integers within the
  type's range, floats finite and within FP16/FP32 range, true/false (or 0/1) for BOOL;
- a request has at most ``MAX_INPUTS`` inputs, with distinct names.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import deserialize_bytes_tensor
from kserve.utils.numpy_codec import to_np_dtype

from . import logs

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES")
MAX_DIMS = 32  # numpy's limit is 64; no model input has more than a handful
# Each input becomes one named part of every row the handler sees; 64 is far past what any
# TorchServe handler takes, and bounds the work done before the first input is even checked.
MAX_INPUTS = 64
_NAME = 64  # characters of a client's input name or datatype quoted in a message
# Each numeric datatype's numpy dtype and, for floats, its largest finite value: looked up once,
# not per request (kserve's to_np_dtype + np.dtype cost more than the conversion of a small tensor).
_DTYPES = {datatype: np.dtype(to_np_dtype(datatype)) for datatype in DATATYPES if datatype != "BYTES"}
_FLOAT_MAX = {datatype: float(np.finfo(dtype).max) for datatype, dtype in _DTYPES.items() if dtype.kind == "f"}
# The gRPC InferTensorContents field each datatype's values travel in (kserve's get_content reads only that one).
_CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
             "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "FP16": "raw_input_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _quoted(text: str) -> str:
    return repr(logs.clean(str(text), _NAME))


def check_inputs(names: Sequence[str]) -> None:
    if len(names) > MAX_INPUTS:
        raise InvalidInput(f"request has {len(names)} inputs; at most {MAX_INPUTS} fit")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"input {_quoted(name)} appears twice: give each input its own name")
        seen.add(name)


def check_header(name: str, datatype: str, shape: Sequence[int]) -> int:
    """The number of values the tensor must hold; InvalidInput for a datatype or shape that cannot be."""
    if datatype not in DATATYPES:
        raise InvalidInput(f"input {_quoted(name)} has datatype {_quoted(datatype)}; v2 datatypes are "
                           f"{', '.join(DATATYPES)}")
    dims = list(shape)
    if not dims or len(dims) > MAX_DIMS or any(d < 1 for d in dims):
        shown = dims if len(dims) <= 8 else f"[{', '.join(map(str, dims[:8]))}, ...] ({len(dims)} dimensions)"
        raise InvalidInput(f"input {_quoted(name)} has shape {shown}; a shape needs 1 to {MAX_DIMS} dimensions, "
                           "each at least 1, the first being the batch")
    return math.prod(dims)


def check_contents(name: str, datatype: str, fields: Sequence[str]) -> None:
    """gRPC: values in a contents field other than the datatype's are never read (kserve would see no data)."""
    expected = _CONTENTS.get(datatype)
    for field in fields:
        if field == "bytes_contents" and expected != field:
            raise _holds_strings(name, datatype)  # the same words as over REST
        if field != expected:
            raise InvalidInput(f"input {_quoted(name)} is {datatype} but its data holds values in {field}: "
                               f"{datatype} values go in {expected}")


def _holds_strings(name: str, datatype: str) -> InvalidInput:
    wants = "true/false" if datatype == "BOOL" else "numbers"
    return InvalidInput(f"input {_quoted(name)} is {datatype} but its data holds strings (BYTES): send {wants}, "
                        "or declare the datatype that fits")


def _count_error(name: str, shape: Sequence[int], expected: int, got: int, unit: str = "values") -> InvalidInput:
    return InvalidInput(f"input {_quoted(name)} has shape {list(shape)}, which holds {expected} values, "
                        f"but its data has {got} {unit}")


def _numeric(name: str, datatype: str, data: Any) -> np.ndarray:
    """JSON (or gRPC contents) values as the datatype, with every value checked."""
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input {_quoted(name)} ({datatype}): data is not a rectangular array of numbers") from None
    kind = array.dtype.kind
    if kind in "US" or (kind == "O" and array.size and isinstance(array.flat[0], (str, bytes))):
        raise _holds_strings(name, datatype)
    if kind not in "biuf" or (datatype == "BOOL" and kind == "f") or (datatype != "BOOL" and kind == "b"):
        wants = "true/false" if datatype == "BOOL" else "numbers"
        raise InvalidInput(f"input {_quoted(name)} is {datatype} but its data holds values of another type: "
                           f"send {wants}, or declare the datatype that fits")
    dtype = _DTYPES[datatype]
    if dtype.kind in "iub" and array.size:
        if kind == "f" and not np.all(np.isfinite(array) & (array == np.trunc(array))):
            raise InvalidInput(f"input {_quoted(name)} is {datatype} but its data holds fractional numbers")
        low, high = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        smallest, largest = array.min(), array.max()
        if smallest < low or largest > high:
            worst = smallest if smallest < low else largest
            raise InvalidInput(f"input {_quoted(name)}: value {worst} does not fit {datatype} ({low} to {high})")
        return array.astype(dtype)
    if kind == "f" and array.size and array.max() <= _FLOAT_MAX[datatype] and array.min() >= -_FLOAT_MAX[datatype]:
        # The common tensor: every value finite (NaN fails both comparisons) and within the type, so the
        # cast cannot overflow: no errstate context (two numpy calls) and no isfinite pass over the result.
        return array.astype(dtype, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(dtype)
    if converted.size and not np.isfinite(converted).all():  # the method: np.all's dispatch costs 2 us more
        raise InvalidInput(f"input {_quoted(name)}: {datatype} values must be finite numbers within "
                           f"+/-{_FLOAT_MAX[datatype]:.4g}")
    return converted


def to_array(name: str, datatype: str, shape: Sequence[int], data: Any, raw: bytes | None) -> np.ndarray:
    """The tensor as an array of its shape; ``raw``: its bytes from gRPC's raw_input_contents or the binary extension."""
    count = check_header(name, datatype, shape)
    if raw is not None:
        array = _from_raw(name, datatype, shape, count, raw)
    elif datatype == "BYTES":
        try:
            array = np.array(data, dtype=object)
        except ValueError:
            raise InvalidInput(f"input {_quoted(name)} (BYTES): data is not a rectangular array") from None
    else:
        array = _numeric(name, datatype, data)
    if array.size != count:
        raise _count_error(name, shape, count, array.size)
    return array.reshape(list(shape))


def _from_raw(name: str, datatype: str, shape: Sequence[int], count: int, raw: bytes) -> np.ndarray:
    if datatype == "BYTES":
        try:
            return np.asarray(deserialize_bytes_tensor(raw), dtype=object)
        except Exception:  # kserve raises whatever struct/numpy raise on a malformed buffer
            raise InvalidInput(f"input {_quoted(name)} (BYTES): raw data is not length-prefixed strings") from None
    dtype = _DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise _count_error(name, shape, count, len(raw), f"bytes ({count * dtype.itemsize} expected for {datatype})")
    array = np.frombuffer(raw, dtype=dtype)
    if dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InvalidInput(f"input {_quoted(name)}: {datatype} values must be finite numbers")
    return array
