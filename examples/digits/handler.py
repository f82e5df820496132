"""TorchServe handler for the digits MLP: one instance = a list of 64 pixel values (0-16).

Each KServe instance arrives as one TorchServe request ``{"data": ...}``; TorchServe
may batch several. Over TorchServe's gRPC API the value is JSON text as bytes; over
its REST API with a JSON body it is already a list: both are accepted.

A bad instance raises PredictionException(400). TorchServe's gRPC API carries one
status per batch, not per request, so when batching is on, the other requests in
the same batch fail with it: validate early in your clients.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

PIXELS = 64


def pixels(row: dict[str, Any]) -> list[float]:
    value = row.get("data")
    if value is None:
        value = row.get("body")
    if isinstance(value, (bytes, bytearray)):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, dict) and "data" in value:
        value = value["data"]
    if not (
        isinstance(value, list)
        and len(value) == PIXELS
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise PredictionException(f"expected a list of {PIXELS} numbers (pixel values 0-16), got {_described(value)}",
                                  400)
    return value


def _described(value: Any) -> str:
    """What the instance was, never the instance itself (answers must not echo input)."""
    if isinstance(value, list):
        numbers = sum(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        return f"a list of {len(value)} values ({numbers} of them numbers)"
    return "no JSON" if value is None else f"a JSON {type(value).__name__}"


class DigitsHandler(BaseHandler):  # type: ignore[misc]
    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        return torch.tensor([pixels(row) for row in data], dtype=torch.float32, device=self.device)

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(data)

    def postprocess(self, data: torch.Tensor) -> list[list[float]]:
        """Class probabilities, one list of 10 per instance."""
        return torch.softmax(data, dim=1).tolist()  # type: ignore[no-any-return]
