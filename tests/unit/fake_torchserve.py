"""A stand-in for TorchServe's client, for tests of the layers above it (fast paths vs kserve's)."""

from __future__ import annotations

import json
from typing import Mapping

from kserve.model_repository import ModelRepository

from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.serving.model import TorchServeModel
from kserve_torchserve.config.model_config import ModelSpec


class FakeClient:
    """Answers a row with the sum of its numbers (its length when not JSON, its input names when several);
    "boom" fails as a handler would."""

    async def predict(self, model: str, version: str | None, row: Mapping[str, bytes], timeout: float) -> bytes:
        if set(row) != {"data"}:  # several inputs: their names, in order
            return json.dumps(list(row)).encode()
        if row["data"] == b"boom":  # a string instance travels as its UTF-8 text
            raise UpstreamError(500, f"model {model} failed: its handler raised an error")
        try:
            value = json.loads(row["data"])
        except ValueError:
            return json.dumps(len(row["data"])).encode()
        return json.dumps(sum(value) if isinstance(value, list) else value).encode()


def two_models() -> ModelRepository:
    """"m" (ready, queues at most 5 rows) and "starting" (not ready), both on a FakeClient."""
    registry = ModelRepository()
    for name, ready in (("m", True), ("starting", False)):
        model = TorchServeModel(ModelSpec(name, "1.0", f"{name}.mar", "h"), FakeClient(), 10, 5,  # type: ignore[arg-type]
                                per_request=False)  # one call per row: what FakeClient answers
        model.ready = ready
        registry.update(model)
    return registry
