"""Sentiment handler: one instance = one text; answer {"label": "POSITIVE"|"NEGATIVE", "score": p}.

The model (model.pt, TorchScript) maps a bag-of-words count vector to two logits;
vocab.json maps words to positions. Explanations (POST .../:explain) give each
known word's contribution to the predicted label: for a linear model, weight x count.

Every value reaches a handler as bytes (kserve-torchserve sends a string as its UTF-8
text and anything else as JSON text, as TorchServe's gRPC API would carry it), so a
type check on what arrives never fires: 123 arrives as b"123", a list as b"[...]". What
the handler decodes is validated instead: an instance must be UTF-8 text with at least
one word in it. A bad instance is refused on its own (400 for that row, through
``context.set_response_status``); the other instances, and other clients' requests
batched with it, get their answers.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

LABELS = ("NEGATIVE", "POSITIVE")
WORD = re.compile(r"[a-z']+")


def _text(row: dict[str, Any]) -> str:
    """The instance's text; ValueError (the client's message) when it is not a text with words."""
    value = row.get("data") if row.get("data") is not None else row.get("body")
    if isinstance(value, (bytes, bytearray)):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("an instance is not UTF-8 text") from None
    if not isinstance(value, str):
        raise ValueError('each instance must be a text (a JSON string like "Great acting")')
    if not WORD.search(value.lower()):  # empty, a number, a list of numbers: nothing to classify
        raise ValueError('each instance must be a text with words in it, like "Great acting"')
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
        self.refused: dict[int, str] = {}
        vectors = []
        for index, row in enumerate(data):
            try:
                vectors.append(self._counts(_text(row)))
            except ValueError as exc:  # this row alone is answered 400; the batch goes on
                self.refused[index] = str(exc)
                self.context.set_response_status(400, str(exc), index)
                vectors.append(torch.zeros(len(self.vocab)))
        return torch.stack(vectors).to(self.device)

    def inference(self, data: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.model(data), dim=1)

    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        scores, labels = data.max(dim=1)
        return [{"message": self.refused[n]} if n in self.refused else {"label": LABELS[int(i)], "score": float(s)}
                for n, (s, i) in enumerate(zip(scores, labels))]

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
