"""Versions of one name, the default, and which version answers a request."""

from __future__ import annotations

from typing import Any, Mapping

import pytest
from kserve.errors import ModelNotFound
from kserve.protocol.infer_type import InferInput, InferRequest

from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.management.registry import ModelRegistry, ServedModel
from kserve_torchserve.serving.model import TorchServeModel


class EchoClient:
    """Answers with the TorchServe version a row was sent to."""

    async def predict(self, model: str, version: str | None, row: Mapping[str, bytes], timeout: float) -> bytes:
        return f'"{version}"'.encode()

    async def explain(self, model: str, version: str | None, row: Mapping[str, bytes], timeout: float) -> bytes:
        return f'"explained by {version}"'.encode()


def version(v: str, ts_version: str | None = None) -> TorchServeModel:
    model = TorchServeModel(ModelSpec("m", v, f"m-{v}.mar", "h"), EchoClient(), 10, 10, ts_version,  # type: ignore[arg-type]
                            per_request=False)
    model.ready = True
    return model


def registry(*versions: str) -> ModelRegistry:
    reg = ModelRegistry()
    for v in versions:
        reg.add(version(v))
    return reg


async def test_the_default_answers_unless_a_version_is_asked_for() -> None:
    served = registry("1.0", "2.0").models["m"]
    assert isinstance(served, ServedModel) and served.default == "1.0"
    headers: dict[str, str] = {}
    assert await served.predict({"instances": [1]}, {}, headers) == {"predictions": ["1.0"]}
    assert headers == {"x-model-version": "1.0"}
    headers = {}
    assert await served.predict({"instances": [1]}, {"x-model-version": "2.0"}, headers) == {"predictions": ["2.0"]}
    assert headers == {"x-model-version": "2.0"}


async def test_grpc_model_version_is_honoured_and_the_header_wins() -> None:
    served = registry("1.0", "2.0").models["m"]
    tensor = InferInput("x", [1, 1], "FP32")
    tensor.set_data_from_numpy(__import__("numpy").array([[1.0]], dtype="float32"))
    request = InferRequest("m", [tensor], model_version="2.0")
    answer: Any = await served.predict(request)
    assert answer.model_version == "2.0"
    answer = await served.predict(request, {"x-model-version": "1.0"})
    assert answer.model_version == "1.0"


async def test_an_unknown_version_is_404_naming_the_versions_there_are() -> None:
    with pytest.raises(UpstreamError) as info:
        await registry("1.0", "2.0").models["m"].predict({"instances": [1]}, {"x-model-version": "9"})
    assert info.value.http_status == 404 and "1.0, 2.0" in info.value.message


async def test_a_reloaded_version_is_sent_to_its_own_torchserve_version() -> None:
    reg = registry("1.0")
    reg.add(version("1.0", ts_version="1.0-r1"))  # same served version, new files
    assert await reg.models["m"].predict({"instances": [1]}) == {"predictions": ["1.0-r1"]}
    assert [m.ts_version for m in reg.versions()] == ["1.0-r1"]


async def test_explain_says_which_version_answered() -> None:
    served = registry("1.0").models["m"]
    headers: dict[str, str] = {}
    assert await served.explain({"instances": [1]}, headers) == {"explanations": ["explained by 1.0"]}
    response_headers: dict[str, str] = {}
    served.postprocess({}, headers, response_headers)
    assert response_headers == {"x-model-version": "1.0"}


def test_default_readiness_and_removal() -> None:
    reg = registry("1.0", "2.0")
    reg.set_default("m", "2.0")
    assert reg.models["m"].default == "2.0" and reg.models["m"].ready
    reg.find("m", "2.0").ready = False  # type: ignore[union-attr]
    assert not reg.models["m"].ready  # the name is as ready as its default version
    reg.remove("m", "2.0")
    assert reg.models["m"].default == "1.0"
    reg.remove("m", "1.0")
    assert "m" not in reg.models and reg.get_model("m") is None
    with pytest.raises(ModelNotFound):
        reg.remove("m", "1.0")
    with pytest.raises(ModelNotFound):
        reg.set_default("m", "1.0")


def test_versions_order_as_numbers() -> None:
    reg = registry("1.9", "1.10", "1.2")
    reg.set_default("m", "1.2")
    reg.remove("m", "1.2")
    assert reg.models["m"].default == "1.10"
