"""The repository RPCs read the model name from kserve's layout (field 1) and Triton's (field 2)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kserve_torchserve.errors import ManagementError
from kserve_torchserve.serving.grpc_repository import INDEX, LOAD, UNLOAD, RepositoryHandlers


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def load(self, model_name: str) -> None:
        if model_name == "missing":
            raise ManagementError(404, "model missing not found: looked for /mnt/models/missing")
        self.calls.append(("load", model_name))

    async def unload(self, model_name: str) -> None:
        self.calls.append(("unload", model_name))

    async def index(self, filter_ready: bool = False) -> list[dict[str, Any]]:
        return [{"name": "m", "version": "1.0", "state": "READY", "reason": ""}]


class Aborted(Exception):
    pass


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def _decode(handlers: RepositoryHandlers, method: str, raw: bytes) -> Any:
    return handlers.handlers[method].request_deserializer(raw)


async def test_kserve_and_triton_layouts_both_reach_the_extension() -> None:
    recorder = Recorder()
    handlers = RepositoryHandlers(recorder)
    kserve_request = pb.RepositoryModelLoadRequest(model_name="a").SerializeToString()  # field 1
    triton_request = b"\x12\x01b"  # Triton: model_name is field 2
    answer = await handlers.load(_decode(handlers, LOAD, kserve_request), Context())  # type: ignore[arg-type]
    assert answer == pb.RepositoryModelLoadResponse(model_name="a", isLoaded=True)
    await handlers.load(_decode(handlers, LOAD, triton_request), Context())  # type: ignore[arg-type]
    await handlers.unload(_decode(handlers, UNLOAD, b"\x0a\x03rep\x12\x01c"), Context())  # type: ignore[arg-type]
    assert recorder.calls == [("load", "a"), ("load", "b"), ("unload", "c")]


async def test_failures_carry_their_grpc_code() -> None:
    handlers = RepositoryHandlers(Recorder())
    with pytest.raises(Aborted) as info:
        await handlers.load(_decode(handlers, LOAD, b"\x12\x07missing"), Context())  # type: ignore[arg-type]
    assert info.value.args == (grpc.StatusCode.NOT_FOUND, "model missing not found: looked for /mnt/models/missing")


async def test_index_answers_tritons_message() -> None:
    handlers = RepositoryHandlers(Recorder())
    answer = await handlers.index(_decode(handlers, INDEX, b"\x10\x01"), Context())  # type: ignore[arg-type]
    raw = handlers.handlers[INDEX].response_serializer(answer)
    # ModelIndex{name=1, version=2, state=3, reason=4} inside models=1
    assert raw == b"\x0a\x0f\x0a\x01m\x12\x031.0\x1a\x05READY"
