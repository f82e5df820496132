"""The fourth system: what a user might write instead, a plain ``kserve.Model`` running the model in-process.

W1: the digits TorchScript MLP, one v1 instance = 64 pixel values, softmax out (what our
example handler answers). W2: resnet18 TorchScript on a base64 PNG with the preprocessing of
TorchServe's ``image_classifier``, top-5 out. kserve's own ModelServer (REST, uvicorn, the
same quiet logging as ours) serves it on --http_port; benchmarks/run.py loads it with wrk.

  python benchmarks/inprocess_kserve.py --workload W1 --model /path/model.pt --http_port 8090
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
from typing import Any, Dict

import kserve
import torch


class InProcess(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, workload: str, path: str) -> None:
        super().__init__(name)
        self.workload = workload
        self.model = torch.jit.load(path).eval()  # type: ignore[no-untyped-call]
        if workload == "W2":
            from torchvision import transforms

            self.steps = transforms.Compose([
                transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        self.ready = True

    def predict(self, payload: Dict[str, Any], headers: Dict[str, str] | None = None) -> Dict[str, Any]:
        instances = payload["instances"]
        with torch.inference_mode():
            if self.workload == "W1":
                return {"predictions": torch.softmax(self.model(torch.tensor(instances, dtype=torch.float32)),
                                                     dim=1).tolist()}
            from PIL import Image

            batch = torch.stack([self.steps(Image.open(io.BytesIO(base64.b64decode(i["data"]))).convert("RGB"))
                                 for i in instances])
            top = torch.topk(torch.softmax(self.model(batch), dim=1), 5)
            return {"predictions": [dict(zip(map(str, i.tolist()), p.tolist())) for p, i in zip(top.values, top.indices)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=["W1", "W2"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", default="model")
    parser.add_argument("--http_port", type=int, required=True)
    args = parser.parse_args()
    server = kserve.ModelServer(http_port=args.http_port, grpc_port=args.http_port + 1, enable_grpc=False,
                                enable_latency_logging=False)
    # kserve logs every request at INFO; ours does not (TS_LOG_LEVEL=INFO): the same for both.
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([InProcess(args.name, args.workload, args.model)])


if __name__ == "__main__":
    main()
