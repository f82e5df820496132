"""Build the example model: an MLP trained on scikit-learn's bundled digits data set.

Writes into OUT (default examples/digits/build):
  model-store/digits.mar   TorchScript model + examples/digits/handler.py
  model.pt                 the same TorchScript model, for in-process comparison
  heldout.json             held-out images and labels (never seen in training)
  request.json             a v1 request with three held-out images, for curl
Prints the held-out accuracy and fails if it is below 0.9.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "examples" / "digits" / "handler.py"
MIN_ACCURACY = 0.9


class DigitsMLP(nn.Module):
    """Pixels 0-16 in, 10 logits out; scaling lives in the model so callers send raw pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16.0)


def train(seed: int = 0) -> tuple[nn.Module, list[list[float]], list[int], float]:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=seed, stratify=digits.target
    )
    torch.manual_seed(seed)
    model = DigitsMLP()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    xt = torch.tensor(x_train, dtype=torch.float32)
    yt = torch.tensor(y_train, dtype=torch.long)
    for _ in range(300):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.tensor(x_test, dtype=torch.float32)).argmax(dim=1)
    accuracy = float((predicted == torch.tensor(y_test)).float().mean())
    return model, x_test.tolist(), [int(y) for y in y_test], accuracy


def build(out: Path) -> float:
    model, x_test, y_test, accuracy = train()
    print(f"digits MLP held-out accuracy: {accuracy:.4f} on {len(y_test)} images")
    if accuracy < MIN_ACCURACY:
        raise SystemExit(f"accuracy {accuracy:.4f} is below {MIN_ACCURACY}")
    out.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(model)
    scripted.save(str(out / "model.pt"))
    store = out / "model-store"
    store.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # model-archiver names files inside the .mar after their basenames.
        shutil.copy(out / "model.pt", Path(tmp) / "model.pt")
        generate_model_archive(
            ModelArchiverConfig(
                model_name="digits",
                version="1.0",
                serialized_file=str(Path(tmp) / "model.pt"),
                handler=str(HANDLER),
                export_path=str(store),
                force=True,
            )
        )
    (out / "heldout.json").write_text(json.dumps({"instances": x_test, "labels": y_test}))
    (out / "request.json").write_text(json.dumps({"instances": x_test[:3]}))
    print(f"wrote {store / 'digits.mar'}, {out / 'heldout.json'}, {out / 'request.json'}")
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "digits" / "build")
    args = parser.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
