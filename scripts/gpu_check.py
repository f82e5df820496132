"""The GPU path, checked on a machine with a GPU: what runs in TorchServe's worker, on the GPU.

TorchServe gives each worker a ``gpu_id`` (``TS_NUMBER_OF_GPU`` > 0); its BaseHandler then
loads the model on ``cuda:<gpu_id>``. This script drives, in one process, the worker-side
code of this runtime exactly as TorchServe's worker calls it, with ``gpu_id=0``:
- our default tensor handler (a TorchScript MLP) and TorchServe's stock ``image_classifier``
  (resnet18, ``weights=None``), each behind our request envelope (rows of two client
  requests batched into one handler call);
- it checks the model and its outputs live on ``cuda:0``, and that the answers equal the
  same model run on the CPU.
Prints one JSON report (and writes it to $OUT/gpu_check.json when $OUT is set); exit 0 when
every check holds. Without a GPU it runs on the CPU and says so (``"device": "cpu"``).

    python3 scripts/gpu_check.py            # PYTHONPATH holding TorchServe's `ts` package and this repo
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from ts.context import Context, RequestProcessor  # noqa: E402

from kserve_torchserve.model_store.handlers import framing  # noqa: E402
from kserve_torchserve.model_store.handlers.rows_envelope import RowsEnvelope  # noqa: E402

GPU = 0 if torch.cuda.is_available() else None


def context(model_dir: Path, name: str, requests: int) -> Context:
    manifest = {"model": {"modelName": name, "modelVersion": "1.0", "serializedFile": "model.pt"}}
    ctx = Context(name, str(model_dir), manifest, 8, GPU, "0.12.0", model_yaml_config={})
    ctx.request_processor = [RequestProcessor({}) for _ in range(requests)]
    ctx.request_ids = {i: f"r{i}" for i in range(requests)}
    ctx.metrics = _Metrics()
    return ctx


class _Metrics:
    """TorchServe's metrics cache, as far as handlers call it (no metrics agent here)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: _Metrics()


def _answers(out: list[Any]) -> list[list[Any]]:
    return [[json.loads(body) for _, _, body, _ in framing.unpack_answers(frame)] for frame in out]


def check_tensor_handler(work: Path) -> dict[str, Any]:
    from kserve_torchserve.model_store.handlers import tensor_handler

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model_dir = work / "mlp"
    model_dir.mkdir()
    torch.jit.script(mlp).save(str(model_dir / "model.pt"))
    handler = tensor_handler.TensorHandler()
    ctx = context(model_dir, "mlp", 2)
    handler.initialize(ctx)
    rows = [[float(i + j) for j in range(64)] for i in range(5)]
    frames = [framing.pack_rows([{"data": json.dumps(r).encode()} for r in rows[:3]]),
              framing.pack_rows([{"data": json.dumps(r).encode()} for r in rows[3:]])]
    started = time.perf_counter()
    out = RowsEnvelope(handler.handle).handle([{"body": f} for f in frames], ctx)
    took = time.perf_counter() - started
    got = [a for answers in _answers(out) for a in answers]
    with torch.no_grad():
        expected = mlp(torch.tensor(rows)).tolist()
    parameter = next(handler.model.parameters()) if hasattr(handler.model, "parameters") else None
    return {
        "handler_device": str(handler.device),
        "model_on": str(parameter.device) if parameter is not None else None,
        "rows_answered": len(got),
        "max_abs_diff_vs_cpu": max(abs(a - b) for ga, ea in zip(got, expected) for a, b in zip(ga, ea)),
        "largest_output": max(abs(b) for ea in expected for b in ea),
        "seconds": round(took, 4),
    }


def check_image_classifier(work: Path) -> dict[str, Any]:
    import torchvision
    from PIL import Image
    from ts.torch_handler.image_classifier import ImageClassifier

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    model_dir = work / "resnet"
    model_dir.mkdir()
    torch.jit.trace(net, torch.rand(1, 3, 224, 224)).save(str(model_dir / "model.pt"))
    handler = ImageClassifier()
    ctx = context(model_dir, "resnet", 2)
    handler.initialize(ctx)
    images = []
    for seed in range(3):
        buffer = io.BytesIO()
        pixels = torch.randint(0, 255, (224, 224, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(buffer, "PNG")
        images.append(buffer.getvalue())
    frames = [framing.pack_rows([{"data": images[0]}, {"data": images[1]}]), framing.pack_rows([{"data": images[2]}])]
    out = RowsEnvelope(handler.handle).handle([{"body": f} for f in frames], ctx)
    got = [a for answers in _answers(out) for a in answers]
    cpu = ImageClassifier()
    cpu.initialize(Context("resnet", str(model_dir), ctx.manifest, 8, None, "0.12.0", model_yaml_config={}))
    expected = cpu.handle([{"data": image} for image in images], context(model_dir, "resnet", 3))
    top_same = all(list(g)[0] == list(e)[0] for g, e in zip(got, expected))
    diff = max(abs(g[k] - e[k]) for g, e in zip(got, expected) for k in e if k in g)
    return {"handler_device": str(handler.device), "model_on": str(next(handler.model.parameters()).device),
            "images_answered": len(got), "top1_same_as_cpu": top_same, "max_prob_diff_vs_cpu": diff}


def main() -> int:
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if GPU is not None else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    with tempfile.TemporaryDirectory() as tmp:
        report["tensor_handler"] = check_tensor_handler(Path(tmp))
        report["image_classifier"] = check_image_classifier(Path(tmp))
    want = "cuda:0" if GPU is not None else "cpu"
    report["ok"] = bool(
        report["tensor_handler"]["model_on"] == want and report["tensor_handler"]["rows_answered"] == 5
        # TorchServe's BaseHandler turns TF32 matmuls on for GPUs of capability 8.0 and up (10-bit mantissa)
        and report["tensor_handler"]["max_abs_diff_vs_cpu"] <= 2e-3 * report["tensor_handler"]["largest_output"]
        and report["image_classifier"]["model_on"] == want and report["image_classifier"]["images_answered"] == 3
        and report["image_classifier"]["top1_same_as_cpu"] and report["image_classifier"]["max_prob_diff_vs_cpu"] < 1e-3
    )
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
