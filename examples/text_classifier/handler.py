"""Sentiment handler: one instance = one text; answer {"label": "POSITIVE"|"NEGATIVE", "score": p}.

The model (model.pt, TorchScript) maps a bag-of-words count vector to two logits;
vocab.json maps words to positions. Explanations (POST .../:explain) give each
known word's contribution to the predicted label: for a linear model, weight x count.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

LABELS = ("NEGATIVE", "POSITIVE")
WORD = re.compile(r"[a-z']+")


def _text(row: dict[str, Any]) -> str:
    value = row.get("data") if row.get("data") is not None else row.get("body")
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise PredictionException("each instance must be a text (a JSON string)", 400)
    return value


class SentimentHandler(BaseHandler):  # type: ignore[misc]
    def initialize(self, context: Any) -> None:
        super().initialize(context)
        model_dir = context.system_properties.get("model_dir")
        with open(os.path.join(model_dir, "vocab.json")) as f:
            self.vocab: dict[str, int] = json.load(f)

    def _counts(self, text: str) -> torch.Tensor:
        counts = torch.zeros(len(self.vocab))
        for word in WORD.findall(text.lower()):
            if word in self.vocab:
                counts[self.vocab[word]] += 1
        return counts

    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        return torch.stack([self._counts(_text(row)) for row in data]).to(self.device)

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.model(data), dim=1)

    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        scores, labels = data.max(dim=1)
        return [{"label": LABELS[int(i)], "score": float(s)} for s, i in zip(scores, labels)]

    def explain_handle(self, data_preprocess: torch.Tensor, raw_data: list[dict[str, Any]]) -> list[Any]:
        weights = self.model.linear.weight.detach()  # [2, vocab]
        words = {i: w for w, i in self.vocab.items()}
        labels = self.inference(data_preprocess).argmax(dim=1)
        explanations = []
        for counts, label in zip(data_preprocess, labels):
            present = torch.nonzero(counts).flatten().tolist()
            contributions = {words[i]: float(weights[label, i] * counts[i]) for i in present}
            explanations.append({"label": LABELS[int(label)], "word_contributions": contributions})
        return explanations
