"""Bare models (.pt/.pth TorchScript, model.py + state dict) -> .mar, with model_archiver's Python API.

The handler is, in order: ``handler.py`` beside the model; the ``handler`` named by
config.json / model-config.yaml (a TorchServe built-in such as ``image_classifier``,
or a file beside the model); else our default tensor handler. Every other plain file
beside the model (``index_to_name.json``, ``class_mapping.json``, vocabularies,
helper modules) is packed as an extra file, so handlers find them in their model dir.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive

from .artifacts import HANDLER_FILE, MANIFEST, MODEL_FILE, TGZ_SUFFIXES, WEIGHT_SUFFIXES, EagerModel, TorchScriptModel
from ..errors import StartupError
from .handlers import DEFAULT_HANDLER
from . import eager_probe
from ..config.model_config import CONFIG_JSON, MODEL_CONFIG_YAML, ModelConfig

_NOT_EXTRA_SUFFIXES = (*WEIGHT_SUFFIXES, ".mar", *TGZ_SUFFIXES)
_NOT_EXTRA_NAMES = {HANDLER_FILE, MODEL_FILE, CONFIG_JSON, MODEL_CONFIG_YAML, "requirements.txt"}


def pick_handler(directory: Path, config: ModelConfig) -> str:
    if (directory / HANDLER_FILE).is_file():
        return str(directory / HANDLER_FILE)
    if config.handler:
        named = directory / config.handler
        if config.handler.endswith(".py"):
            if not named.is_file():
                raise StartupError(f"handler {config.handler!r} named in {directory} does not exist there")
            return str(named)
        return config.handler  # a TorchServe built-in (image_classifier, text_classifier, ...)
    return str(DEFAULT_HANDLER)


def extra_files(directory: Path, handler: str) -> list[Path]:
    return [
        p for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_EXTRA_NAMES
        and not p.name.endswith(_NOT_EXTRA_SUFFIXES) and str(p) != handler
    ]


def check_eager(model: EagerModel) -> str:
    """Run the eager probe in a child process; StartupError with its message on failure."""
    result = subprocess.run(
        [sys.executable, "-m", eager_probe.__name__, str(model.model_file), str(model.weights)],
        capture_output=True, text=True, timeout=600,
    )
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise StartupError(
            f"checking {model.model_file} + {model.weights} failed: {(result.stderr or result.stdout)[-500:]}"
        ) from None
    if "error" in answer:
        raise StartupError(str(answer["error"]))
    return str(answer["class"])


def check_archive_weights(archives: list[Path]) -> None:
    """Eager-mode archives' weights, checked with weights_only=True in one child; StartupError names the file.

    TorchServe's BaseHandler unpickles an archive's serializedFile when a modelFile names the
    class, so a pickle that runs code is refused here, before TorchServe sees the archive.
    """
    if not archives:
        return
    result = subprocess.run([sys.executable, "-m", eager_probe.__name__, "--archives", *map(str, archives)],
                            capture_output=True, text=True, timeout=600)
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise StartupError(f"checking the weights of {', '.join(a.name for a in archives)} failed: "
                           f"{' '.join((result.stderr or result.stdout).split())[-300:]}") from None
    if "error" in answer:
        raise StartupError(str(answer["error"]))


def build_mar(
    source: TorchScriptModel | EagerModel, name: str, version: str, config: ModelConfig, out_dir: Path
) -> tuple[Path, str]:
    """The .mar built in ``out_dir``, and the handler it got."""
    directory = source.path.parent if isinstance(source, TorchScriptModel) else source.model_file.parent
    handler = pick_handler(directory, config)
    extras = extra_files(directory, handler)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(source, TorchScriptModel):
            # TorchServe loads TorchScript only from a file named *.pt.
            serialized = Path(tmp) / f"{source.path.stem}.pt"
            shutil.copyfile(source.path, serialized)
            model_file = None
        else:
            check_eager(source)
            serialized, model_file = source.weights, str(source.model_file)
        requirements = directory / "requirements.txt"
        generate_model_archive(
            ModelArchiverConfig(
                model_name=name,
                version=version,
                serialized_file=str(serialized),
                model_file=model_file,
                handler=handler,
                extra_files=",".join(str(p) for p in extras) or None,
                config_file=str(config.yaml_file) if config.yaml_file else None,
                requirements_file=str(requirements) if requirements.is_file() else None,
                export_path=str(out_dir),
                force=True,
            )
        )
    return out_dir / f"{name}.mar", handler


def _with_manifest_version(raw: bytes, version: str) -> bytes:
    manifest = json.loads(raw)
    manifest["model"]["modelVersion"] = version
    return json.dumps(manifest, indent=2).encode("utf-8")


def with_version(archive: Path, version: str, out_dir: Path) -> Path:
    """A copy of a TorchServe archive (.mar, .tar.gz or no-archive directory) whose manifest says ``version``.

    TorchServe takes a model's version from its manifest only, so serving one archive
    under another version (``model_version`` at registration, or a reload beside the
    running copy) needs this copy. A directory is copied as links to its files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / archive.name
    if archive.is_dir():
        target.mkdir()
        for entry in archive.iterdir():
            if entry.name != MANIFEST.split("/")[0]:
                (target / entry.name).symlink_to(entry.resolve())
        (target / MANIFEST).parent.mkdir()
        (target / MANIFEST).write_bytes(_with_manifest_version((archive / MANIFEST).read_bytes(), version))
    elif archive.name.endswith(TGZ_SUFFIXES):
        with tarfile.open(archive) as src, tarfile.open(target, "w:gz") as dst:
            for member in src.getmembers():
                data = src.extractfile(member) if member.isfile() else None
                if data is not None and member.name.lstrip("./").endswith(MANIFEST):
                    raw = _with_manifest_version(data.read(), version)
                    member.size = len(raw)
                    dst.addfile(member, io.BytesIO(raw))
                else:
                    dst.addfile(member, data)
    else:
        with zipfile.ZipFile(archive) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename == MANIFEST:
                    dst.writestr(info, _with_manifest_version(src.read(info), version))
                    continue
                with src.open(info) as data, dst.open(info, "w") as out:  # weights may be gigabytes: streamed
                    shutil.copyfileobj(data, out, 2**20)
    return target
