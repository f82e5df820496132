"""Build the custom-input example: a TorchScript model taking input_ids and attention_mask.

Instances look like {"input_ids": [101, 2023, 2003, 102], "attention_mask": [1, 1, 1, 1]};
the default handler calls model(input_ids=..., attention_mask=...) with them.
Writes OUT/model.pt (default examples/custom_input/build).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class TinyEncoder(nn.Module):
    """Masked mean of token embeddings, then two logits."""

    def __init__(self, vocab_size: int = 30522, dim: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def build(out: Path) -> Path:
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyEncoder().eval()).save(str(out / "model.pt"))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    print(f"wrote {build(parser.parse_args().out)}")
