"""Build the top-1 image example: the image_classifier example's model, with handler.py beside it.

Request {"instances": [{"data": "<base64 PNG>"}]} -> {"predictions": [{"class": "tabby", "confidence": 0.98}]}.
Writes OUT/ (default examples/image_top1/build): model.pt, index_to_name.json, handler.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("image_classifier_build", HERE.parent / "image_classifier" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(out)
    (out / "config.json").unlink()  # handler.py beside the model names the handler
    shutil.copy(HERE / "handler.py", out / "handler.py")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "build")
    print(f"wrote {build(parser.parse_args().out)}")
