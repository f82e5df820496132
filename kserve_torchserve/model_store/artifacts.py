"""What is in a storage directory: TorchServe archives, TorchScript files, eager models.

Kinds, told apart by content where names can lie:
- archives TorchServe loads as they are: ``*.mar`` (zip), ``*.tar.gz``/``*.tgz``
  (``--archive-format tgz``) and directories holding ``MAR-INF/MANIFEST.json``
  (``--archive-format no-archive``);
- TorchScript: a ``.pt``/``.pth`` zip with TorchScript's ``code/`` (torch.jit.save);
- eager: a ``.pt``/``.pth`` that is not TorchScript, next to the ``model.py`` defining its class.
Archives are checked (``archive_checks``) before anything unpacks them, us or TorchServe.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Iterator, Union

import yaml

from ..errors import StartupError
from .archive_checks import check_tar, check_zip

MANIFEST = "MAR-INF/MANIFEST.json"
WEIGHT_SUFFIXES = (".pt", ".pth")
TGZ_SUFFIXES = (".tar.gz", ".tgz")
HANDLER_FILE = "handler.py"
MODEL_FILE = "model.py"
_MAX_CONFIG_BYTES = 2**20  # a manifest or model-config.yaml: a few KiB; read whole, so capped


@dataclass(frozen=True)
class Archive:
    """A model TorchServe loads as it is."""

    path: Path
    manifest: dict[str, Any]
    archive_config: dict[str, Any] = field(default_factory=dict)  # its own model-config.yaml

    @property
    def name(self) -> str:
        return str(self.manifest["model"]["modelName"])

    @property
    def version(self) -> str:
        return str(self.manifest["model"].get("modelVersion") or "1.0")

    @property
    def handler(self) -> str:
        return str(self.manifest["model"].get("handler", ""))

    @property
    def pickled_weights(self) -> str | None:
        """The serialized file TorchServe's BaseHandler unpickles (torch.load): eager mode, with a modelFile."""
        model = self.manifest["model"]
        return str(model["serializedFile"]) if model.get("modelFile") and model.get("serializedFile") else None


@dataclass(frozen=True)
class TorchScriptModel:
    path: Path


@dataclass(frozen=True)
class EagerModel:
    model_file: Path
    weights: Path


Source = Union[Archive, TorchScriptModel, EagerModel]


def _parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
        str(manifest["model"]["modelName"])
    except (ValueError, KeyError, TypeError):
        raise StartupError(f"{where}: {MANIFEST} is not a valid TorchServe manifest (needs model.modelName)") from None
    return manifest  # type: ignore[no-any-return]


def _parse_yaml(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise StartupError(f"{where} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise StartupError(f"{where} must be a YAML mapping of settings")
    return data


def _small(path: Path, name: str, size: int) -> None:
    """The manifest and config are read whole: a few KiB, never the megabytes a hostile archive may claim."""
    if size > _MAX_CONFIG_BYTES:
        raise StartupError(f"{path}: {name} is {size} bytes, over the {_MAX_CONFIG_BYTES} a manifest or "
                           "model config may take: rebuild the archive")


def _archive(path: Path, read: Callable[[str], bytes | None]) -> Archive:
    raw = read(MANIFEST)
    if raw is None:
        raise StartupError(f"{path} has no {MANIFEST}: rebuild it with torch-model-archiver")
    manifest = _parse_manifest(raw, str(path))
    config_name = manifest["model"].get("configFile")
    config_raw = read(config_name) if config_name else None
    config = _parse_yaml(config_raw, f"{path}:{config_name}") if config_raw is not None else {}
    return Archive(path, manifest, config)


def read_archive(path: Path) -> Archive:
    """An archive's manifest and own config; StartupError names the file and the fix."""
    if path.is_dir():
        def read_file(name: str) -> bytes | None:
            if not (path / name).is_file():
                return None
            _small(path, name, (path / name).stat().st_size)
            return (path / name).read_bytes()

        return _archive(path, read_file)
    if path.name.endswith(TGZ_SUFFIXES):
        check_tar(path)
        with tarfile.open(path) as tf:
            files = _tar_files(tf)

            def read_member(name: str) -> bytes | None:
                member = files.get(name)
                extracted = tf.extractfile(member) if member is not None else None
                if member is None or extracted is None:
                    return None
                _small(path, name, member.size)
                return extracted.read()

            return _archive(path, read_member)
    with check_zip(path) as zf:
        def read_entry(name: str) -> bytes | None:
            try:
                info = zf.getinfo(name)
            except KeyError:
                return None
            _small(path, name, info.file_size)
            return zf.read(info)

        return _archive(path, read_entry)


def _tar_files(tf: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """A TorchServe .tar.gz's files by their name in the model directory (model-archiver's tgz puts
    everything under a top folder named after the model)."""
    files = {PurePosixPath(m.name).as_posix().lstrip("./"): m for m in tf.getmembers() if m.isfile()}
    key = next((k for k in files if k == MANIFEST or k.endswith("/" + MANIFEST)), MANIFEST)
    prefix = key[: -len(MANIFEST)]
    return {name[len(prefix):]: m for name, m in files.items() if name.startswith(prefix)}


@contextlib.contextmanager
def open_member(path: Path, name: str) -> Iterator[IO[bytes] | None]:
    """One file of a TorchServe archive (.mar, .tar.gz or no-archive directory), as a stream; None if absent."""
    if path.is_dir():
        with contextlib.ExitStack() as stack:
            yield stack.enter_context(open(path / name, "rb")) if (path / name).is_file() else None
    elif path.name.endswith(TGZ_SUFFIXES):
        with tarfile.open(path) as tf:
            member = _tar_files(tf).get(name)
            yield tf.extractfile(member) if member is not None else None
    else:
        with zipfile.ZipFile(path) as zf, contextlib.ExitStack() as stack:
            yield stack.enter_context(zf.open(name)) if name in zf.namelist() else None


def is_torchscript(path: Path) -> bool:
    """torch.jit.save writes a zip with a code/ folder; torch.save (state dicts, pickled modules) does not."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False  # legacy (non-zip) torch.save format: never TorchScript
    return any("/code/" in name or name.startswith("code/") for name in names)


def _is_archive(path: Path) -> bool:
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.suffix == ".mar" or path.name.endswith(TGZ_SUFFIXES)


def find_sources(directory: Path) -> list[Source]:
    """The models in one directory (not its subdirectories, except no-archive model dirs)."""
    entries = sorted(directory.iterdir())
    sources: list[Source] = [read_archive(p) for p in entries if _is_archive(p)]
    weights = [p for p in entries if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    scripted = [p for p in weights if is_torchscript(p)]
    eager = [p for p in weights if p not in scripted]
    sources += [TorchScriptModel(p) for p in scripted]
    if eager:
        model_file = directory / MODEL_FILE
        if not model_file.is_file():
            raise StartupError(
                f"{eager[0]} is not TorchScript, so it needs {MODEL_FILE} beside it defining the model class "
                "(eager mode); or save the model with torch.jit.script/trace and torch.jit.save"
            )
        if len(eager) > 1:
            raise StartupError(
                f"{directory} holds several state dicts ({', '.join(p.name for p in eager)}) for one {MODEL_FILE}: "
                "keep one, or put each model in its own directory"
            )
        sources.append(EagerModel(model_file, eager[0]))
    return sources
