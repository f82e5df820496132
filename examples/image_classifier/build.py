"""Build the image-classification example: the runtime description's TorchScript recipe.

torchvision's resnet18 (random weights: no downloads here) traced to model.pt, with
TorchServe's built-in ``image_classifier`` handler named in config.json and the
ImageNet class names (shipped inside torchvision) in index_to_name.json. Writes
OUT/ (default examples/image_classifier/build), a storage directory served as is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torchvision.models as models

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    torch.manual_seed(0)
    model = models.resnet18(weights=None)
    model.eval()
    example_input = torch.rand(1, 3, 224, 224)
    traced_model = torch.jit.trace(model, example_input)
    out.mkdir(parents=True, exist_ok=True)
    traced_model.save(str(out / "model.pt"))
    categories = models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    (out / "index_to_name.json").write_text(json.dumps({str(i): name for i, name in enumerate(categories)}))
    (out / "config.json").write_text(json.dumps({"handler": "image_classifier", "batchSize": 4, "maxBatchDelay": 20}))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    print(f"wrote {build(parser.parse_args().out)}")
