"""The start-up summary lists every registration, and asking TorchServe about one never fails start-up."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.summary import summary


class Describing:
    """TorchServe's DescribeModel: "ok" has one CPU worker; any other name is unknown (404), as a model
    TorchServe unregistered after its workers failed to load, or one asked about while it restarts."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def describe(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        self.asked.append(model)
        if model != "ok":
            raise UpstreamError(404, f"TorchServe does not serve model {model}: Model not found: {model}")
        return [{"workers": [{"gpu": False}]}]


def _registration(name: str, failure: str | None) -> Any:
    return SimpleNamespace(spec=SimpleNamespace(name=name, version="1.0", handler="h"), ts_version="1.0",
                           model=SimpleNamespace(failure=failure, batcher=None), min_workers=1, max_workers=1, batch_size=1,
                           max_batch_delay=100, response_timeout=120)


def test_failed_and_vanished_models_are_listed_without_failing_start_up() -> None:
    registrations = {(r.spec.name, "1.0"): r for r in (
        _registration("ok", None),
        _registration("broken", "its workers could not load: weights file model.bin is missing"),
        _registration("gone", None))}
    management = SimpleNamespace(operations=SimpleNamespace(registrations=registrations),
                                 registry=SimpleNamespace(models={}))
    settings = SimpleNamespace(storage_uri="/mnt/models", http_port=8080, grpc_port=8081, enable_grpc=True,
                               model_api=SimpleNamespace(enabled=False, repository=False))
    props = {"inference_address": "http://127.0.0.1:1", "grpc_inference_port": "2", "number_of_gpu": "0"}
    client = Describing()
    text = asyncio.run(summary(settings, client, management, props, "1"))  # type: ignore[arg-type]
    assert "model ok v1.0: handler h, workers 1 (min 1, max 1)" in text
    assert "device CPU (no GPU assigned)" in text
    # TorchServe drops a model whose workers could not load: it is not asked, its reason is given.
    assert "model broken v1.0: not served: its workers could not load: weights file model.bin is missing" in text
    assert "broken" not in client.asked
    assert "model gone v1.0: not described: TorchServe does not serve model gone" in text
