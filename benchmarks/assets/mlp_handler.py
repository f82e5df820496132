"""Benchmark handler for issue 14's workload: a TorchScript MLP (784 -> 64 -> 10), one instance = 784 floats.

Parses each row's JSON as a user's handler would (bytes from our envelope or a multipart
body, or an already-parsed list from TorchServe's JSON body), answers class probabilities.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

FEATURES = 784


def features(row: dict[str, Any]) -> list[float]:
    value = row.get("data")
    if value is None:
        value = row.get("body")
    if isinstance(value, (bytes, bytearray)):
        value = json.loads(value)
    if not (isinstance(value, list) and len(value) == FEATURES):
        raise PredictionException(f"expected a list of {FEATURES} numbers", 400)
    return value


class MLPHandler(BaseHandler):  # type: ignore[misc]
    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        return torch.tensor([features(row) for row in data], dtype=torch.float32)

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            answer: torch.Tensor = self.model(data)
            return answer

    def postprocess(self, data: torch.Tensor) -> list[list[float]]:
        return torch.softmax(data, dim=1).tolist()  # type: ignore[no-any-return]
