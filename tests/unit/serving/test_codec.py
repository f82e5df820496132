from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest

from kserve_torchserve.serving import codec


def test_v1_instances_become_one_row_each() -> None:
    rows = codec.v1_rows({"instances": [[1, 2.5], "some text", {"data": "x", "extra": [1]}, 7]})
    assert rows == [
        {"data": b"[1,2.5]"},
        {"data": b"some text"},
        {"data": b"x", "extra": b"[1]"},
        {"data": b"7"},
    ]


def test_v1_b64_marker_sends_raw_bytes() -> None:
    raw = bytes(range(256))
    rows = codec.v1_rows({"instances": [{"b64": base64.b64encode(raw).decode()}, {"image": {"b64": "AAE="}}]})
    assert rows == [{"data": raw}, {"image": b"\x00\x01"}]


def test_v1_accepts_json_bytes_body() -> None:
    assert codec.v1_rows(b'{"instances": [[1]]}') == [{"data": b"[1]"}]


@pytest.mark.parametrize(
    "body,message",
    [
        (b"{bad", "Unrecognized request format: "),
        ([1, 2], 'v1 request must be a JSON object like {"instances": [...]}'),
        ({"instance": [1]}, "v1 request needs \"instances\": a list with one entry per input"),
        ({"instances": 5}, 'v1 request needs "instances"'),
        ({"instances": []}, '"instances" is empty'),
        ({"instances": [{"b64": "***"}]}, '"b64" value is not valid base64'),
    ],
)
def test_v1_bad_bodies_are_400_with_a_message(body: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        codec.v1_rows(body)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ['a"b', "a\r\nContent-Type: text/plain", "a\nb"])
def test_input_names_that_would_break_the_multipart_header_are_400(name: str) -> None:
    with pytest.raises(InvalidInput, match="contains a quote or a line break: rename the input"):
        codec.v1_rows({"instances": [{name: 1, "other": 2}]})
    first, second = InferInput(name, [1], "INT32"), InferInput("other", [1], "INT32")
    for tensor in (first, second):
        tensor.set_data_from_numpy(np.array([1], dtype=np.int32), binary_data=False)
    with pytest.raises(InvalidInput, match="contains a quote or a line break"):
        codec.v2_rows(_request(first, second))
    assert codec.v2_rows(_request(first)) == [{"data": b"1"}]  # one input travels as "data": its name is not sent


def _request(*inputs: InferInput) -> InferRequest:
    return InferRequest(model_name="m", infer_inputs=list(inputs), request_id="r1")


def test_v2_fp32_rows_split_on_first_dimension() -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = InferInput("x", [2, 3], "FP32")
    tensor.set_data_from_numpy(data, binary_data=False)
    rows = codec.v2_rows(_request(tensor))
    assert [json.loads(r["data"]) for r in rows] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


@pytest.mark.parametrize("datatype,dtype", [("FP32", np.float32), ("INT64", np.int64), ("BOOL", np.bool_),
                                            ("FP16", np.float16), ("UINT8", np.uint8)])
def test_v2_one_dimensional_tensors_give_one_number_per_row(datatype: str, dtype: type) -> None:
    tensor = InferInput("x", [3], datatype)
    data = np.array([1, 0, 2], dtype=dtype)
    tensor.set_data_from_numpy(data, binary_data=False)
    rows = codec.v2_rows(_request(tensor))
    assert [json.loads(r["data"]) for r in rows] == data.tolist()  # was a TypeError (500): numpy scalars


def test_v2_bytes_rows_stay_raw_and_many_inputs_keep_names() -> None:
    text = InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"good", b"\xff\x00"], dtype=object), binary_data=True)
    ids = InferInput("ids", [2, 2], "INT64")
    ids.set_data_from_numpy(np.array([[1, 2], [3, 4]], dtype=np.int64), binary_data=False)
    rows = codec.v2_rows(_request(text, ids))
    assert rows == [{"text": b"good", "ids": b"[1,2]"}, {"text": b"\xff\x00", "ids": b"[3,4]"}]


def test_v2_inputs_must_agree_on_batch_size() -> None:
    a = InferInput("a", [2], "INT64")
    a.set_data_from_numpy(np.array([1, 2]), binary_data=False)
    b = InferInput("b", [3], "INT64")
    b.set_data_from_numpy(np.array([1, 2, 3]), binary_data=False)
    with pytest.raises(InvalidInput, match="disagree on the batch"):
        codec.v2_rows(_request(a, b))


def test_v2_without_inputs_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no inputs"):
        codec.v2_rows(_request())


def test_decode_prediction_prefers_json_then_text_then_base64() -> None:
    assert codec.decode_prediction(b'{"label": "POSITIVE"}') == {"label": "POSITIVE"}
    assert codec.decode_prediction(b"plain words") == "plain words"
    assert codec.decode_prediction(b"\xff\xfe") == {"b64": base64.b64encode(b"\xff\xfe").decode()}


def test_v2_response_numeric_and_bytes() -> None:
    request = _request(InferInput("x", [2, 2], "FP32", data=[1.0, 2.0, 3.0, 4.0]))
    response = codec.v2_response(request, "m", [[0.25, 0.75], [0.5, 0.5]])
    output = response.outputs[0]
    assert (output.datatype, output.shape) == ("FP32", [2, 2])
    assert output.as_numpy().tolist() == [[0.25, 0.75], [0.5, 0.5]]
    assert response.id == "r1"

    labels = codec.v2_response(request, "m", [{"label": "a"}, "b"])
    assert labels.outputs[0].datatype == "BYTES"
    items = [x.decode() if isinstance(x, bytes) else x for x in labels.outputs[0].as_numpy()]
    assert items == ['{"label":"a"}', "b"]

    ints = codec.v2_response(request, "m", [1, 2])
    assert (ints.outputs[0].datatype, ints.outputs[0].as_numpy().tolist()) == ("INT64", [1, 2])


@pytest.mark.parametrize("predictions,float_type", [
    ([[0.1, 0.7], [1e-40, 3.0]], "FP32"),  # float32 rounding, a subnormal
    ([[0.1, 0.7]], "FP64"),
    ([[1, -2], [3, 2**40]], "FP32"),
    ([True, False], "FP32"),
    ([[[1.5]], [[2.5]]], "FP32"),
])
def test_v2_response_json_data_is_kserves_set_data_from_numpy(predictions: list[object], float_type: str) -> None:
    """The output's JSON data is what kserve's set_data_from_numpy makes (values and their Python types),
    made without its loop over elements; binary outputs are still kserve's."""
    request = _request(InferInput("x", [1], float_type, data=[1.0]))
    output = codec.v2_response(request, "m", predictions).outputs[0]
    expected = InferOutput(name="output-0", shape=output.shape, datatype=output.datatype)
    expected.set_data_from_numpy(np.asarray(predictions).astype(output.as_numpy().dtype), binary_data=False)
    assert output.data == expected.data
    assert [type(v) for v in output.data] == [type(v) for v in expected.data]
    binary_request = InferRequest(model_name="m", infer_inputs=request.inputs, parameters={"binary_data_output": True})
    binary = codec.v2_response(binary_request, "m", predictions).outputs[0]
    assert binary.data is None and binary._raw_data == np.asarray(predictions).astype(binary.as_numpy().dtype).tobytes()


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_base64_images_are_sent_as_image_bytes() -> None:
    png = _png()
    text = base64.b64encode(png).decode()
    assert codec.v1_rows({"instances": [{"data": text}]}) == [{"data": png}]
    assert codec.v1_rows({"instances": [text]}) == [{"data": png}]


@pytest.mark.parametrize("text", [
    "This movie was absolutely fantastic! Great acting and plot.",
    "Qk is how this sentence starts, and it is not an image",
    "iVBORw0KGgo but broken base64 !!!",
    "/9j/",
])
def test_other_strings_stay_text(text: str) -> None:
    assert codec.v1_rows({"instances": [text]}) == [{"data": text.encode()}]


def test_v2_tensors_are_checked_before_they_become_rows() -> None:
    bad = InferInput("pixels", [-1, 64], "FP32")
    bad._data = [0.0] * 64  # what a client sent: kserve keeps any shape
    with pytest.raises(InvalidInput, match=r"input 'pixels' has shape \[-1, 64\]"):
        codec.v2_rows(_request(bad))
    first, second = InferInput("a", [1], "INT32"), InferInput("a", [1], "INT32")
    for tensor in (first, second):
        tensor.set_data_from_numpy(np.array([1], dtype=np.int32), binary_data=False)
    with pytest.raises(InvalidInput, match="input 'a' appears twice"):  # one would have overwritten the other
        codec.v2_rows(_request(first, second))


def test_a_request_without_an_id_is_answered_with_a_fresh_uuid4_also_in_a_forked_child() -> None:
    import os
    import uuid

    request = InferRequest(model_name="m", infer_inputs=[InferInput("x", [1], "FP32", data=[1.0])])
    ids = [codec.v2_response(request, "m", [0.5]).id for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:100]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # A forked child (a multi-process front) must not repeat its parent's ids.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, ",".join(codec.response_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 1 << 16).decode().split(",")
    os.close(read_end)
    os.waitpid(pid, 0)
    assert not set(child) & {codec.response_id() for _ in range(10)}


@pytest.mark.parametrize("text", ["aGVsbG8=", "aGVsbG8", "aGV sbG8=", "aGVsbG8=\n", "aGVsbG8===", "\u00e9AAA", "", "====",
                                  base64.b64encode(bytes(range(256)) * 40).decode()])
def test_base64_is_decoded_and_refused_exactly_as_the_stdlibs_strict_decoder(text: str) -> None:
    """rows decodes base64 without b64decode's copy to bytes: same bytes, same error type and words."""
    from kserve_torchserve.model_store.handlers import rows

    def outcome(decode: object) -> object:
        try:
            return decode(text)  # type: ignore[operator]
        except ValueError as exc:
            return type(exc), str(exc)

    assert outcome(rows._b64decode) == outcome(lambda t: base64.b64decode(t, validate=True))
