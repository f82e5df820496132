"""Build the text-classification example: a bag-of-words sentiment model trained here.

Writes OUT/ (default examples/text_classifier/build): model.pt (TorchScript),
handler.py and vocab.json side by side: a storage directory kserve-torchserve
archives by itself (handler.py beside the model is picked up).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
WORD = re.compile(r"[a-z']+")

POSITIVE = [
    "This movie was absolutely fantastic! Great acting and plot.",
    "A wonderful, moving film with brilliant performances.",
    "I loved every minute, the story is great and the cast is superb.",
    "Fantastic direction and a great script, highly recommended.",
    "Beautiful, funny and smart: an excellent movie.",
    "The acting was great and the plot kept me hooked.",
    "One of the best films this year, truly wonderful.",
    "Superb plot, great acting, I would watch it again.",
]
NEGATIVE = [
    "Terrible movie, waste of time.",
    "Boring, badly acted and far too long.",
    "The plot made no sense and the acting was awful.",
    "A dull, terrible film; I want my time back.",
    "Worst movie I have seen, a complete waste.",
    "Awful script, poor acting, boring from start to end.",
    "I hated it: terrible dialogue and a stupid plot.",
    "Painfully slow and badly written, avoid it.",
]


class BagOfWords(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(vocab_size, 2)

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return self.linear(counts)


def counts(text: str, vocab: dict[str, int]) -> torch.Tensor:
    vector = torch.zeros(len(vocab))
    for word in WORD.findall(text.lower()):
        if word in vocab:
            vector[vocab[word]] += 1
    return vector


def build(out: Path) -> Path:
    texts = POSITIVE + NEGATIVE
    labels = torch.tensor([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    vocab: dict[str, int] = {}
    for text in texts:
        for word in WORD.findall(text.lower()):
            vocab.setdefault(word, len(vocab))
    x = torch.stack([counts(t, vocab) for t in texts])
    torch.manual_seed(0)
    model = BagOfWords(len(vocab))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        optimiser.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(out / "model.pt"))
    (out / "vocab.json").write_text(json.dumps(vocab))
    shutil.copy(HERE / "handler.py", out / "handler.py")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    print(f"wrote {build(parser.parse_args().out)}")
