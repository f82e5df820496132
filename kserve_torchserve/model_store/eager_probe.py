"""Check an eager model (model.py + state dict) the way TorchServe will load it, in a child process.

``python -m kserve_torchserve.model_store.eager_probe model.py weights.pth`` prints one JSON line:
``{"class": "MyModel"}`` or ``{"error": "..."}`` (exit 1). A child process keeps user
code and torch out of the server process, and a crash in user code out of start-up.
TorchServe's BaseHandler imports model.py, requires exactly one class defined in it,
builds it with no arguments and calls load_state_dict; weights load with
weights_only=True, so a pickled whole module, or a pickle that would run code, is refused
here rather than unpickled in a worker.

``... eager_probe --archives A.mar B.tar.gz`` checks the weights of archives in eager mode
(a modelFile and a serializedFile, which BaseHandler unpickles) the same way, without
running anything from the archive: ``{"class": ""}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import StartupError
from .artifacts import open_member, read_archive


def check(model_file: Path, weights: Path) -> str:
    """The model class name; ValueError with a message naming the file and the fix."""
    import torch

    spec = importlib.util.spec_from_file_location(model_file.stem, model_file)
    if spec is None or spec.loader is None:
        raise ValueError(f"{model_file} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(model_file.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ValueError(f"{model_file} fails to import: {type(exc).__name__}: {exc}") from None
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    modules = [c for c in classes if issubclass(c, torch.nn.Module)]
    if len(modules) != 1:
        found = ", ".join(c.__name__ for c in modules) or "none"
        raise ValueError(f"{model_file} must define exactly one torch.nn.Module class, found {found}")
    if len(classes) != 1:
        others = ", ".join(c.__name__ for c in classes if c is not modules[0])
        raise ValueError(
            f"{model_file} defines other classes too ({others}); TorchServe needs the model class alone "
            "in the model file: move the others to a module of their own"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{weights} is not a state dict of tensors ({_refusal(exc)}: a pickled whole model?): save "
            "torch.save(model.state_dict(), path), or TorchScript with torch.jit.save"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} is not a state dict of tensors (it holds a {type(state).__name__} of other "
                         "values): save torch.save(model.state_dict(), path)")
    try:
        model = modules[0]()
    except TypeError as exc:
        raise ValueError(f"{modules[0].__name__}() needs arguments ({exc}); TorchServe builds it with none") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{weights} does not fit {modules[0].__name__} in {model_file.name}: {detail}") from None
    return modules[0].__name__


def _refusal(exc: Exception) -> str:
    """What torch.load(weights_only=True) refused, in a few words (its own message is a page long)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]{1,100})", str(exc))
    return f"torch.load(weights_only=True) refuses {found.group(1)}" if found else \
        f"torch.load(weights_only=True) cannot load it: {type(exc).__name__}"


def check_archive(archive: Path) -> None:
    """ValueError unless the archive's eager weights load with weights_only=True (BaseHandler unpickles them).

    Only a zip (torch.save) or a binary pickle can run code when torch.load reads it; other
    files (safetensors, ...) are left to the handler. Storages go to the meta device: nothing
    but the pickle is read, from a copy outside the archive (torch seeks back and forth, which
    inside a compressed entry would decompress it again each time).
    """
    import torch

    name = read_archive(archive).pickled_weights
    if name is None:
        return
    if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        raise ValueError(f"{archive.name}: its serializedFile must name a file inside the archive")
    with tempfile.TemporaryDirectory() as tmp:
        weights = archive / name if archive.is_dir() else Path(tmp) / "weights"
        if not archive.is_dir():
            with open_member(archive, name) as source, open(weights, "wb") as out:
                if source is None:  # TorchServe's worker reports a missing serialized file itself
                    return
                shutil.copyfileobj(source, out, 2**20)
        if not weights.is_file():
            return
        with open(weights, "rb") as head:
            magic = head.read(2)
        if magic != b"PK" and magic[:1] != b"\x80":
            return
        try:
            torch.load(weights, map_location="meta", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"{archive.name}: its serialized file {name} is more than a state dict of tensors ({_refusal(exc)}), "
                "and TorchServe's handler would unpickle it, which can run code: save "
                "torch.save(model.state_dict(), path) and rebuild the archive"
            ) from None


def main(argv: list[str]) -> int:
    result: dict[str, Any]
    try:
        if argv[0] == "--archives":
            for archive in argv[1:]:
                check_archive(Path(archive))
            result = {"class": ""}
        else:
            result = {"class": check(Path(argv[0]), Path(argv[1]))}
    except (ValueError, StartupError) as exc:
        result = {"error": str(exc)}
    print(json.dumps(result))
    return 0 if "class" in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
