"""Import a model's handler the way TorchServe's worker will, in a child process.

``python -m kserve_torchserve.model_store.handler_probe MODEL_DIR HANDLER`` prints one JSON
line: ``{"entry": "DigitsHandler"}`` or ``{"error": "..."}`` (exit 1). The child runs
where a worker runs: cwd and the front of sys.path are the unpacked model directory.
What it requires is what ts/model_loader.py requires: the handler module imports (a file
in the archive, or else TorchServe's built-in ``ts.torch_handler.<name>``), and it has a
``handle`` function (or the ``module:function`` the manifest names) or exactly one class,
built with no arguments, with ``handle`` and ``initialize``. ``initialize`` is not called:
that loads the weights, which is the worker's job and may need a GPU.

``probe_handler`` (the parent's side) unpacks an archive without its serialized weights,
which the import does not need and which may be gigabytes.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import tarfile
import traceback
from pathlib import Path, PurePosixPath

from ..errors import StartupError
from .archive_checks import check_tar, check_zip
from .artifacts import MANIFEST, TGZ_SUFFIXES, read_archive

# This module's import name, also when it runs as __main__ (-m): what the child is started as.
_MODULE = __spec__.name if __spec__ is not None else __name__
_MISSING_FIX = "install it in the image (or list it in the archive's requirements file, with install_py_dep_per_model=true)"


def _where(exc: BaseException, model_dir: Path) -> str:
    """'handler.py line 3' for the deepest frame inside the model directory, '' when none is."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{Path(exc.filename).name} line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(model_dir))]
    return f"{Path(frames[-1].filename).name} line {frames[-1].lineno}" if frames else ""


def _import_failure(exc: BaseException, model_dir: Path, module_name: str) -> ValueError:
    where = _where(exc, model_dir) or module_name
    detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    fix = _MISSING_FIX if isinstance(exc, ModuleNotFoundError) else "fix the handler and rebuild the archive"
    return ValueError(f"{where}: {type(exc).__name__}: {detail}: {fix}")


def _import_handler(model_dir: Path, module_name: str) -> object:
    """ts.model_loader's order: the module by name (model dir first on sys.path), else the built-in."""
    own = (model_dir / f"{module_name}.py").is_file() or (model_dir / module_name / "__init__.py").is_file()
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        if own:  # the handler's own import failed: a missing dependency, not a built-in name
            raise _import_failure(exc, model_dir, module_name) from None
    except Exception as exc:  # SyntaxError, NameError, ...: whatever the worker would die of
        raise _import_failure(exc, model_dir, module_name) from None
    builtin = f"ts.torch_handler.{module_name}"
    try:
        return importlib.import_module(builtin)
    except ModuleNotFoundError as exc:
        if exc.name == builtin:
            raise ValueError(f"handler {module_name!r} is neither a .py file in the archive nor one of TorchServe's "
                             "built-in handlers (image_classifier, text_classifier, ...): rebuild the archive "
                             "with --handler naming one") from None
        raise ValueError(f"TorchServe's built-in handler {module_name} fails to import: {exc}: {_MISSING_FIX}") from None
    except Exception as exc:
        raise ValueError(f"TorchServe's built-in handler {module_name} fails to import: {type(exc).__name__}: "
                         f"{exc}") from None


def check(model_dir: Path, handler: str) -> str:
    """The entry point TorchServe would call; ValueError with one line naming the problem and the fix."""
    from ts.utils.util import list_classes_from_module

    sys.path.insert(0, str(model_dir))
    module_part, _, function = handler.partition(":")
    module_name = module_part.split("/")[-1].removesuffix(".py")
    module = _import_handler(model_dir, module_name)
    function = function or "handle"
    if hasattr(module, function):
        if not callable(getattr(module, function)):
            raise ValueError(f"{module_name}.{function} is not a function: TorchServe calls it with (data, context)")
        return function
    classes = list_classes_from_module(module)
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise ValueError(f"{module_name}: TorchServe needs a {function}() function or exactly one class, found {found}: "
                         "move the other classes to a module of their own")
    try:
        instance = classes[0]()
    except Exception as exc:
        raise ValueError(f"{classes[0].__name__}() fails: {type(exc).__name__}: {exc}: TorchServe builds the handler "
                         "class with no arguments") from None
    missing = [m for m in ("handle", "initialize") if not callable(getattr(instance, m, None))]
    if missing:
        raise ValueError(f"{classes[0].__name__} has no {' or '.join(missing)} method: subclass "
                         "ts.torch_handler.base_handler.BaseHandler, or define them")
    return str(classes[0].__name__)


def _unpack(archive: Path, out: Path) -> tuple[Path, str]:
    """The model directory a worker would see (weights left out) and the manifest's handler."""
    found = read_archive(archive)
    handler = found.handler
    if archive.is_dir():
        return archive, handler
    weights = str(found.manifest["model"].get("serializedFile") or "")
    out.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(TGZ_SUFFIXES):
        check_tar(archive)
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if PurePosixPath(m.name).name != weights or not weights]
            tf.extractall(out, members=members, filter="data")
        manifest = next(out.rglob(MANIFEST))
        return manifest.parent.parent, handler
    with check_zip(archive) as zf:
        zf.extractall(out, members=[n for n in zf.namelist() if n != weights])
    return out, handler


async def probe_handler(archive: Path, work: Path) -> str | None:
    """None when the archive's handler imports as TorchServe's worker will import it, else the problem."""
    try:
        model_dir, handler = await asyncio.to_thread(_unpack, archive, work)
    except StartupError as exc:
        return str(exc)
    if not handler:
        return f"{archive.name} names no handler in its {MANIFEST}: rebuild it with torch-model-archiver --handler"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", _MODULE, str(model_dir), handler, cwd=str(model_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # The model directory may be the user's own (a no-archive model): leave no __pycache__ in it.
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    out, err = await proc.communicate()
    try:
        answer = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = " ".join(err.decode(errors="replace").split())[-300:]
        return f"importing handler {handler} crashed the interpreter (exit code {proc.returncode}): {tail}"
    return str(answer["error"]) if "error" in answer else None


def main(argv: list[str]) -> int:
    try:
        result = {"entry": check(Path(argv[0]).resolve(), argv[1])}
    except ValueError as exc:
        result = {"error": " ".join(str(exc).split())}
    print(json.dumps(result))
    return 0 if "entry" in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
