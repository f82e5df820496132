"""The gRPC fast path answers exactly as kserve's gRPC server does, for good and bad requests.

Both servers run in-process on the same models and DataPlane; TorchServe is replaced by
a small fake client (the integration tests call the real one through the fast path):
this test is about the gRPC layer only.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, AsyncIterator

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferOutput, InferResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from prometheus_client import REGISTRY

from kserve_torchserve.serving.grpc_fastpath import LeanGRPCServer, to_grpc
from kserve_torchserve.backend.ports import free_ports
from kserve_torchserve.serving.rest import TorchServeDataPlane
from tests.unit.fake_torchserve import two_models

Tensor = pb.ModelInferRequest.InferInputTensor
OPTIONS = {"grpc_max_send_message_length": 1 << 20, "grpc_max_receive_message_length": 1 << 20}


@pytest.fixture
async def stubs() -> AsyncIterator[tuple[Any, Any]]:
    """(kserve's server, ours), started on free ports over the same registry; stopped after."""
    registry = two_models()
    dataplane = TorchServeDataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)
    kserve_port, our_port = free_ports(2)
    servers = [GRPCServer(kserve_port, dataplane, extension, kwargs=OPTIONS, grace_period=0),
               LeanGRPCServer(our_port, dataplane, extension, kwargs=OPTIONS, grace_period=0, registry=registry)]
    tasks = [asyncio.ensure_future(server.start(max_workers=2)) for server in servers]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in (kserve_port, our_port)]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 10)
        yield tuple(pb_grpc.GRPCInferenceServiceStub(channel) for channel in channels)  # type: ignore[misc]
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop()
        for task in tasks:
            await asyncio.gather(task, return_exceptions=True)


def _fp32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


# (id, request, the code both servers must answer with)
CASES: list[tuple[str, pb.ModelInferRequest, str]] = [
    ("fp32 2x2", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="FP32", shape=[2, 2], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3, 4.5]))]), "OK"),
    ("int64 with id", pb.ModelInferRequest(model_name="m", id="abc", inputs=[Tensor(
        name="x", datatype="INT64", shape=[1, 2], contents=pb.InferTensorContents(int64_contents=[1, 2]))]), "OK"),
    ("fp64", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="FP64", shape=[1, 3], contents=pb.InferTensorContents(fp64_contents=[0.1, 0.2, 0.3]))]), "OK"),
    ("bool", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="BOOL", shape=[1, 3], contents=pb.InferTensorContents(bool_contents=[True, False, True]))]), "OK"),
    ("bytes", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="BYTES", shape=[2], contents=pb.InferTensorContents(bytes_contents=[b"\x89PNG", b"hi"]))]), "OK"),
    ("raw fp32", pb.ModelInferRequest(model_name="m", raw_input_contents=[_fp32(1, 2, 3)], inputs=[Tensor(
        name="x", datatype="FP32", shape=[1, 3])]), "OK"),
    ("two inputs", pb.ModelInferRequest(model_name="m", inputs=[
        Tensor(name="a", datatype="INT32", shape=[1, 1], contents=pb.InferTensorContents(int_contents=[7])),
        Tensor(name="b", datatype="INT32", shape=[1, 1], contents=pb.InferTensorContents(int_contents=[8]))]), "OK"),
    # Refused by kserve's own check, before any conversion.
    ("raw count mismatch", pb.ModelInferRequest(model_name="m", raw_input_contents=[_fp32(1), _fp32(2)], inputs=[
        Tensor(name="x", datatype="FP32", shape=[1, 1])]), "INVALID_ARGUMENT"),
    ("raw and contents", pb.ModelInferRequest(model_name="m", raw_input_contents=[_fp32(1)], inputs=[Tensor(
        name="x", datatype="FP32", shape=[1, 1], contents=pb.InferTensorContents(fp32_contents=[1]))]), "INVALID_ARGUMENT"),
    # Refused by our codec.
    ("no inputs", pb.ModelInferRequest(model_name="m"), "INVALID_ARGUMENT"),
    ("shape and data disagree", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="FP32", shape=[3], contents=pb.InferTensorContents(fp32_contents=[1]))]), "INVALID_ARGUMENT"),
    ("batch dims disagree", pb.ModelInferRequest(model_name="m", inputs=[
        Tensor(name="a", datatype="INT32", shape=[1], contents=pb.InferTensorContents(int_contents=[7])),
        Tensor(name="b", datatype="INT32", shape=[2], contents=pb.InferTensorContents(int_contents=[8, 9]))]), "INVALID_ARGUMENT"),
    ("more rows than the queue", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="INT64", shape=[6], contents=pb.InferTensorContents(int64_contents=range(6)))]), "RESOURCE_EXHAUSTED"),
    # Refused by the model or on the way to TorchServe.
    ("handler fails", pb.ModelInferRequest(model_name="m", inputs=[Tensor(
        name="x", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"boom"]))]), "INTERNAL"),
    ("unknown model", pb.ModelInferRequest(model_name="nope", inputs=[Tensor(
        name="x", datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1]))]), "NOT_FOUND"),
    ("model not ready", pb.ModelInferRequest(model_name="starting", inputs=[Tensor(
        name="x", datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1]))]), "UNAVAILABLE"),
]


def _response(datatype: str, data: list[Any], binary: bool = False, parameters: dict[str, Any] | None = None,
              output_parameters: dict[str, Any] | None = None, version: str | None = "2") -> InferResponse:
    output = InferOutput(name="output-0", shape=[len(data)], datatype=datatype, data=list(data),
                         parameters=output_parameters)
    return InferResponse(response_id="r1", model_name="m", model_version=version, infer_outputs=[output],
                         use_binary_outputs=binary, parameters=parameters)


@pytest.mark.parametrize("args", [
    ("FP32", [0.25, -1.5]), ("FP64", [0.1]), ("INT64", [1, 2**40]), ("BOOL", [True, False]), ("INT32", [7]),
    ("UINT8", [255]), ("BYTES", ["text", b"\x89PNG"]), ("FP16", [1.0]), ("FP32", [0.5], True),
    ("FP32", [0.5], False, {"note": "x"}), ("FP32", [0.5], False, None, {"unit": "m"}), ("FP32", []),
    ("FP32", [0.5], False, None, None, None),  # no version
], ids=lambda a: "-".join(str(x) for x in a if not isinstance(x, list)))
def test_to_grpc_gives_kserves_message(args: tuple[Any, ...]) -> None:
    """Our conversion of a response to gRPC is kserve's, message for message (each side gets its own
    response: kserve's conversion changes the one it converts)."""
    assert to_grpc(_response(*args)) == _response(*args).to_grpc()


async def _answer(stub: Any, method: str, request: Any) -> tuple[str, Any]:
    try:
        return "OK", await getattr(stub, method)(request, timeout=10)
    except grpc.aio.AioRpcError as err:
        return err.code().name, err.details()


@pytest.mark.parametrize("request_,code", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_model_infer_answers_like_kserve(stubs: tuple[Any, Any], request_: pb.ModelInferRequest,
                                               code: str) -> None:
    (slow_code, slow), (fast_code, fast) = [await _answer(stub, "ModelInfer", request_) for stub in stubs]
    assert fast_code == slow_code, (fast, slow)
    assert fast_code == code, fast
    if fast_code == "OK":
        if not request_.id:  # a generated uuid on both sides
            assert fast.id and slow.id
            fast.id = slow.id = ""
        assert fast == slow
    else:
        assert fast == slow


@pytest.mark.parametrize("method,request_", [
    ("ServerReady", pb.ServerReadyRequest()),
    ("ModelReady", pb.ModelReadyRequest(name="starting")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="m")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="nope")),  # kserve's interceptor: NOT_FOUND
])
async def test_other_methods_still_go_through_kserve(stubs: tuple[Any, Any], method: str, request_: Any) -> None:
    slow, fast = [await _answer(stub, method, request_) for stub in stubs]
    assert fast == slow


async def test_fast_path_really_serves_model_infer(stubs: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """kserve's servicer never sees ModelInfer for our models; its latency histograms still count it."""
    seen: list[str] = []
    original = InferenceServicer.ModelInfer

    async def spy(self: InferenceServicer, request: pb.ModelInferRequest, context: Any) -> Any:
        seen.append(request.model_name)
        return await original(self, request, context)

    monkeypatch.setattr(InferenceServicer, "ModelInfer", spy)
    _, ours = stubs
    labels = {"model_name": "m"}
    before = {name: REGISTRY.get_sample_value(f"request_{name}_seconds_count", labels) or 0.0
              for name in ("preprocess", "predict", "postprocess")}
    answer = await ours.ModelInfer(CASES[0][1], timeout=10)
    assert list(answer.outputs[0].contents.fp32_contents) == [3.0, 7.5]
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ours.ModelInfer(CASES[-3][1], timeout=10)  # the handler fails: still counted as a predict
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    after = {name: REGISTRY.get_sample_value(f"request_{name}_seconds_count", labels)
             for name in ("preprocess", "predict", "postprocess")}
    assert after == {"preprocess": before["preprocess"] + 2, "predict": before["predict"] + 2,
                     "postprocess": before["postprocess"] + 1}
    with pytest.raises(grpc.aio.AioRpcError):
        await ours.ModelInfer(CASES[-2][1], timeout=10)  # unknown model: kserve's servicer answers
    assert seen == ["nope"]


@pytest.mark.parametrize("tensor,words", [
    (Tensor(name="x", datatype="FLOAT99", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1])),
     "input 'x' has datatype 'FLOAT99'; v2 datatypes are BOOL"),  # kserve: "invalid content type"
    (Tensor(name="x", datatype="FP32", shape=[-1, 2], contents=pb.InferTensorContents(fp32_contents=[1, 2])),
     "input 'x' has shape [-1, 2]; a shape needs 1 to 32 dimensions, each at least 1"),
    (Tensor(name="x", datatype="FP32", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"1.5"])),
     "input 'x' is FP32 but its data holds strings (BYTES): send numbers"),  # kserve: no data at all
    (Tensor(name="x", datatype="FP32", shape=[1], contents=pb.InferTensorContents(int_contents=[1])),
     "input 'x' is FP32 but its data holds values in int_contents: FP32 values go in fp32_contents"),
])
async def test_bad_tensors_are_named_before_kserve_converts_them(stubs: tuple[Any, Any], tensor: Any, words: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    _, ours = stubs
    code, details = await _answer(ours, "ModelInfer", pb.ModelInferRequest(model_name="m", inputs=[tensor]))
    assert code == "INVALID_ARGUMENT" and details.startswith(words), details
    lines = [r for r in caplog.records if r.name.startswith("kserve")]
    assert [(r.levelname, r.exc_info) for r in lines] == [("INFO", None)]  # kserve's: ERROR with a traceback
    assert lines[0].getMessage() == f"request failed: 400 gRPC ModelInfer m: {details}"


async def test_a_failed_call_logs_its_request_id(stubs: tuple[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    _, ours = stubs
    with pytest.raises(grpc.aio.AioRpcError):
        await ours.ModelInfer(CASES[-1][1], timeout=10, metadata=(("x-request-id", "g-1"),))  # not ready
    (line,) = [r for r in caplog.records if r.name.startswith("kserve")]
    assert line.levelname == "WARNING" and "503 gRPC ModelInfer starting (request id g-1)" in line.getMessage()
