"""Build the eager-mode example: model.py + model.pth (a state dict), no archive, no handler.

kserve-torchserve archives it with its default tensor handler: each instance is a
784-value list (or 28x28 nested list); the answer is the 10 logits.
Writes OUT/ (default examples/eager/build).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "model.py", out / "model.py")
    sys.path.insert(0, str(HERE))
    from model import MyModel  # the file users write, exactly

    torch.manual_seed(0)
    model = MyModel()
    torch.save(model.state_dict(), out / "model.pth")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    print(f"wrote {build(parser.parse_args().out)}")
