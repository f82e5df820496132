from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from kserve.errors import InvalidInput

from kserve_torchserve.serving import tensors


@pytest.mark.parametrize("datatype,shape,data,expected", [
    ("FP32", [2, 2], [1, 2.5, 3, 4], np.array([[1, 2.5], [3, 4]], dtype=np.float32)),
    ("FP32", [2, 2], [[1, 2], [3, 4]], np.array([[1, 2], [3, 4]], dtype=np.float32)),  # nested, row-major
    ("FP64", [1], [0.1], np.array([0.1])),
    ("INT64", [1, 2], [1, -2], np.array([[1, -2]], dtype=np.int64)),
    ("INT8", [2], [2.0, -3.0], np.array([2, -3], dtype=np.int8)),  # integral floats fit integer types
    ("UINT64", [1], [2**63], np.array([2**63], dtype=np.uint64)),
    ("BOOL", [3], [True, False, True], np.array([True, False, True])),
    ("BOOL", [2], [0, 1], np.array([False, True])),
    ("BYTES", [2], ["a", b"\x00"], np.array(["a", b"\x00"], dtype=object)),
])
def test_good_tensors_become_arrays_of_their_type_and_shape(datatype: str, shape: list[int], data: Any,
                                                            expected: np.ndarray) -> None:
    array = tensors.to_array("x", datatype, shape, data, None)
    assert array.dtype == expected.dtype and array.shape == expected.shape
    assert array.tolist() == expected.tolist()


@pytest.mark.parametrize("datatype,shape,data,message", [
    ("FLOAT99", [1], [1], "input 'x' has datatype 'FLOAT99'; v2 datatypes are BOOL, UINT8"),
    ("FP32", [-1, 2], [1, 2], "input 'x' has shape [-1, 2]; a shape needs 1 to 32 dimensions, each at least 1"),
    ("FP32", [0, 2], [], "has shape [0, 2]"),
    ("FP32", [], [1], "has shape []"),
    ("FP32", [1] * 40, [1], "(40 dimensions)"),
    ("FP32", [1, 64], [1.0] * 10, "input 'x' has shape [1, 64], which holds 64 values, but its data has 10 values"),
    ("FP32", [10**12, 10**12], [1.0], "which holds 1000000000000000000000000 values, but its data has 1"),
    ("FP32", [2], [1e40, 1], "input 'x': FP32 values must be finite numbers within +/-3.403e+38"),
    ("FP16", [1], [70000.0], "FP16 values must be finite numbers within +/-6.55e+04"),
    ("UINT8", [2], [300, 1], "input 'x': value 300 does not fit UINT8 (0 to 255)"),
    ("INT8", [1], [-129], "value -129 does not fit INT8 (-128 to 127)"),
    ("INT32", [1], [1.5], "input 'x' is INT32 but its data holds fractional numbers"),
    ("INT64", [1], [2**70], "is INT64 but its data holds values of another type"),
    ("FP32", [2], ["abc", 1], "input 'x' is FP32 but its data holds strings (BYTES): send numbers"),
    ("FP32", [1], ["1.5"], "holds strings (BYTES)"),  # numpy would have read it as 1.5
    ("FP32", [2], [1, None], "holds values of another type"),
    ("FP32", [2], [[1, 2], [3]], "data is not a rectangular array of numbers"),
    ("INT32", [1], [True], "is INT32 but its data holds values of another type"),
    ("BOOL", [1], [2], "value 2 does not fit BOOL (0 to 1)"),
    ("BOOL", [1], [0.5], "is BOOL but its data holds values of another type: send true/false"),
])
def test_bad_tensors_are_400_naming_the_input_what_it_got_and_what_fits(datatype: str, shape: list[int], data: Any,
                                                                        message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        tensors.to_array("x", datatype, shape, data, None)
    assert message in str(refused.value)


FP32_MAX, FP16_MAX = float(np.finfo(np.float32).max), float(np.finfo(np.float16).max)


@pytest.mark.parametrize("datatype,value,fits", [
    ("FP32", FP32_MAX, True), ("FP32", -FP32_MAX, True),
    # Past the largest float32, yet rounding to it: the cast gives a finite value, so it is served.
    ("FP32", float(np.nextafter(FP32_MAX, np.inf)), True),
    ("FP32", 3.5e38, False), ("FP32", -3.5e38, False), ("FP32", float("inf"), False), ("FP32", float("nan"), False),
    ("FP16", FP16_MAX, True), ("FP16", 65519.0, True), ("FP16", 65520.0, False), ("FP16", float("-inf"), False),
    ("FP64", float("inf"), False), ("FP64", float("nan"), False), ("FP64", 1e308, True),
])
def test_floats_at_the_edge_of_their_type_are_served_exactly_when_the_cast_is_finite(datatype: str, value: float,
                                                                                     fits: bool) -> None:
    # Values well inside the type take a shorter check than values at or past its edge (tensors._numeric);
    # both must agree with what the cast itself gives, whichever element is the odd one.
    data = [0.5, value, -0.25]
    if fits:
        array = tensors.to_array("x", datatype, [3], data, None)
        expected = np.array(data).astype(tensors._DTYPES[datatype])
        assert array.dtype == expected.dtype and array.tolist() == expected.tolist()
    else:
        with pytest.raises(InvalidInput, match="values must be finite numbers within"):
            tensors.to_array("x", datatype, [3], data, None)


def test_names_and_datatypes_are_quoted_cut_and_cleaned() -> None:
    with pytest.raises(InvalidInput) as refused:
        tensors.check_header("a\nb" + "n" * 500, "X" * 500, [1])
    text = str(refused.value)
    assert "\n" not in text and len(text) < 400 and "'a?bnnn" in text


def test_raw_data_is_checked_against_the_shape() -> None:
    raw = struct.pack("<3f", 1, 2, 3)
    assert tensors.to_array("x", "FP32", [1, 3], None, raw).tolist() == [[1, 2, 3]]
    with pytest.raises(InvalidInput, match=r"holds 4 values, but its data has 12 bytes \(16 expected for FP32\)"):
        tensors.to_array("x", "FP32", [4], None, raw)
    with pytest.raises(InvalidInput, match="FP32 values must be finite numbers"):
        tensors.to_array("x", "FP32", [1], None, struct.pack("<f", float("inf")))
    strings = struct.pack("<I", 2) + b"hi" + struct.pack("<I", 1) + b"!"
    assert tensors.to_array("x", "BYTES", [2], None, strings).tolist() == [b"hi", b"!"]
    with pytest.raises(InvalidInput, match="raw data is not length-prefixed strings"):
        tensors.to_array("x", "BYTES", [1], None, struct.pack("<I", 99) + b"short")


def test_a_request_has_at_most_64_inputs_with_distinct_names() -> None:
    tensors.check_inputs([f"in{i}" for i in range(64)])
    with pytest.raises(InvalidInput, match="request has 65 inputs; at most 64 fit"):
        tensors.check_inputs([f"in{i}" for i in range(65)])
    with pytest.raises(InvalidInput, match="input 'a' appears twice"):
        tensors.check_inputs(["a", "b", "a"])


def test_grpc_values_must_be_in_the_datatypes_contents_field() -> None:
    tensors.check_contents("x", "FP32", ["fp32_contents"])
    tensors.check_contents("x", "FP32", [])  # raw_input_contents, or nothing (then the count says so)
    with pytest.raises(InvalidInput, match="holds strings \\(BYTES\\): send numbers"):
        tensors.check_contents("x", "INT64", ["bytes_contents"])
    with pytest.raises(InvalidInput, match="values in fp32_contents: UINT8 values go in uint_contents"):
        tensors.check_contents("x", "UINT8", ["fp32_contents"])
