"""Build the custom-handler example exactly as the runtime description does it.

resnet18 in eager mode (model.py + model.pth, random weights), the custom handler,
class_mapping.json, archived with the torch-model-archiver command:
  torch-model-archiver --model-name custom-resnet --version 1.0 --model-file model.py \\
    --serialized-file model.pth --handler handler.py --extra-files class_mapping.json \\
    --export-path model-store/
Writes OUT/model-store/custom-resnet.mar (default examples/custom_image_handler/build).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torchvision.models as models

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    work = out / "src"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "handler.py"):
        shutil.copy(HERE / name, work / name)
    torch.manual_seed(0)
    torch.save(models.resnet18(weights=None).state_dict(), work / "model.pth")
    categories = models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    (work / "class_mapping.json").write_text(json.dumps({str(i): c for i, c in enumerate(categories)}))
    (out / "model-store").mkdir(exist_ok=True)
    archiver = Path(sys.executable).with_name("torch-model-archiver")
    subprocess.run(
        [str(archiver), "--model-name", "custom-resnet", "--version", "1.0", "--model-file", "model.py",
         "--serialized-file", "model.pth", "--handler", "handler.py", "--extra-files", "class_mapping.json",
         "--export-path", str(out / "model-store"), "--force"],
        cwd=work, check=True,
    )
    return out / "model-store"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    print(f"wrote {build(parser.parse_args().out)}")
