"""scripts/gpu_check.py, the script run on a lent GPU machine, keeps working: here it runs on the CPU.

It drives the worker-side code (our envelope, our tensor handler, TorchServe's image_classifier)
as TorchServe's worker does; a change to that code must not leave the GPU check broken until the
next GPU session finds out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_the_gpu_check_passes_on_the_cpu_when_there_is_no_gpu(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")], cwd=ROOT,
                            env={**os.environ, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] is True
    assert report["tensor_handler"]["handler_device"] == "cpu" and report["tensor_handler"]["rows_answered"] == 5
    assert report["image_classifier"]["top1_same_as_cpu"] is True
