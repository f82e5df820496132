"""Default TorchServe handler for a .pt/.pth served without a handler of its own: tensors in, lists out.

Each row is one KServe instance. ``{"data": <nested list>}`` becomes one input tensor;
a dict instance such as ``{"input_ids": [...], "attention_mask": [...]}`` becomes
keyword arguments ``model(input_ids=..., attention_mask=...)``. Rows whose shapes
match are stacked into one batch (TorchServe's dynamic batching); the model's output
is split back into one nested list per row. The model runs on the worker's device
(``cuda:<gpu_id>`` when TorchServe assigns a GPU).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

logger = logging.getLogger(__name__)


def _value(raw: Any) -> Any:
    if isinstance(raw, (bytes, bytearray)):
        try:
            return json.loads(raw)
        except ValueError:
            raise PredictionException("input is not JSON: send numbers or nested lists of numbers", 400)
    return raw


def _tensor(name: str, value: Any, device: torch.device) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise PredictionException(f"input {name} is not a number or a nested list of numbers", 400)
    if tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


class TensorHandler(BaseHandler):  # type: ignore[misc]
    def initialize(self, context: Any) -> None:
        super().initialize(context)
        logger.info("model on %s", self.device)

    def _load_pickled_model(self, model_dir: str, model_file: str, model_pt_path: str | None) -> Any:
        """TorchServe's loader, with the weights read by ``torch.load(weights_only=True)``.

        BaseHandler calls ``torch.load`` without ``weights_only``: a pickle in the weights file
        would run code wherever torch's default is not weights-only (torch < 2.6, or
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1). The start-up check refuses such files too
        (eager_probe); this keeps the worker safe on its own.
        """
        model = super()._load_pickled_model(model_dir, model_file, None)  # the class, no weights yet
        if model_pt_path:
            model.load_state_dict(torch.load(model_pt_path, map_location=self.device, weights_only=True))
        return model

    def preprocess(self, data: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        rows = []
        for row in data:
            if "body" in row and "data" not in row:
                row = {"data": row["body"]}
            rows.append({name: _tensor(name, _value(raw), self.device) for name, raw in row.items()})
        return rows

    @staticmethod
    def _split(output: Any, count: int) -> list[Any]:
        """One answer per row from a batched output: a tensor, a tuple of tensors, or a dict of tensors."""
        if isinstance(output, torch.Tensor):
            return list(torch.unbind(output, dim=0))
        if isinstance(output, (tuple, list)):
            return [[o[i] for o in output] for i in range(count)]
        if isinstance(output, dict):
            return [{k: v[i] for k, v in output.items()} for i in range(count)]
        raise PredictionException(f"the model returned {type(output).__name__}; expected tensors", 500)

    def _run(self, inputs: dict[str, torch.Tensor]) -> Any:
        shapes = ", ".join(f"{name} {list(t.shape)}" for name, t in inputs.items())
        try:
            if list(inputs) == ["data"]:
                return self.model(inputs["data"])
            return self.model(**inputs)
        except (RuntimeError, TypeError, ValueError) as exc:
            # With tensors straight from the request, a failing forward is nearly always
            # input of the wrong shape or type: tell the client, in one line.
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            cause = lines[-1].strip() if lines else type(exc).__name__  # TorchScript puts the cause last
            raise PredictionException(f"the model rejected inputs of shape {shapes}: {cause}", 400)

    def inference(self, rows: list[dict[str, torch.Tensor]], *args: Any, **kwargs: Any) -> list[Any]:
        names = list(rows[0])
        same_shape = all(
            list(row) == names and all(row[n].shape == rows[0][n].shape for n in names) for row in rows
        )
        with torch.inference_mode():
            if same_shape:
                return self._split(self._run({n: torch.stack([row[n] for row in rows]) for n in names}), len(rows))
            # Ragged rows: one forward pass per row.
            return [self._split(self._run({n: t.unsqueeze(0) for n, t in row.items()}), 1)[0] for row in rows]

    def postprocess(self, outputs: list[Any]) -> list[Any]:
        return [_plain(o) for o in outputs]


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
