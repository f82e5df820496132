"""Makes our request envelope importable where TorchServe's worker looks for envelopes.

TorchServe's worker loads the envelope named by ``service_envelope`` as
``ts.torch_handler.request_envelope.<name>``: only modules inside TorchServe's own package.
This directory is put first on the PYTHONPATH of TorchServe's processes (backend/process.py)
and Python imports this file at start-up; it maps that one module name onto ours
(``kserve_torchserve.model_store.handlers.rows_envelope``), then runs the sitecustomize this
one shadows, if there is one.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Sequence

NAME = "ts.torch_handler.request_envelope.kserve_torchserve"
TARGET = "kserve_torchserve.model_store.handlers.rows_envelope"


class _Alias(importlib.abc.MetaPathFinder):
    """Finds NAME: our envelope's file, loaded under TorchServe's name (TorchServe takes the first
    class *defined* in the module it imports, so the module must carry that name)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != NAME:
            return None
        origin = importlib.util.find_spec(TARGET)
        return None if origin is None else importlib.util.spec_from_file_location(NAME, origin.origin)


def _run_shadowed() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


sys.meta_path.append(_Alias())
_run_shadowed()
