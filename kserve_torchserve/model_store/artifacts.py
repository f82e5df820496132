"""What is in a storage directory: TorchServe archives, TorchScript files, eager models.

Kinds, told apart by content where names can lie:
- archives TorchServe loads as they are: ``*.mar`` (zip), ``*.tar.gz``/``*.tgz``
  (``--archive-format tgz``) and directories holding ``MAR-INF/MANIFEST.json``
  (``--archive-format no-archive``);
- TorchScript: a ``.pt``/``.pth`` zip with TorchScript's ``code/`` (torch.jit.save);
- eager: a ``.pt``/``.pth`` that is not TorchScript, next to the ``model.py`` defining its class.
Archives are checked before TorchServe unpacks them: no entry may leave the target
directory (``..``, absolute paths, links).
"""

from __future__ import annotations

import json
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Union

import yaml

from ..errors import StartupError

MANIFEST = "MAR-INF/MANIFEST.json"
WEIGHT_SUFFIXES = (".pt", ".pth")
TGZ_SUFFIXES = (".tar.gz", ".tgz")
HANDLER_FILE = "handler.py"
MODEL_FILE = "model.py"


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


@dataclass(frozen=True)
class TorchScriptModel:
    path: Path


@dataclass(frozen=True)
class EagerModel:
    model_file: Path
    weights: Path


Source = Union[Archive, TorchScriptModel, EagerModel]


def _unsafe_member(name: str) -> bool:
    """An entry name that, joined to a target directory, would land outside it."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (bool(path.parts) and ":" in path.parts[0])


def check_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip, refusing entries that would escape the directory it is unpacked in."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise StartupError(f"{path} is not a valid zip archive: rebuild it (torch-model-archiver for .mar)") from None
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if _unsafe_member(info.filename) or stat.S_ISLNK(mode):
            zf.close()
            raise StartupError(
                f"{path}: entry {info.filename!r} would be written outside the model directory "
                "(absolute path, '..' or a link); rebuild the archive from plain files"
            )
    return zf


def check_tar(path: Path) -> None:
    """Refuse a tar whose entries are links, devices, or paths outside its directory."""
    try:
        with tarfile.open(path) as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError):
        raise StartupError(f"{path} is not a valid .tar.gz archive: rebuild it") from None
    for member in members:
        if _unsafe_member(member.name) or not (member.isfile() or member.isdir()):
            raise StartupError(
                f"{path}: entry {member.name!r} would be written outside the model directory or is not a "
                "plain file (absolute path, '..', link or device); rebuild the archive from plain files"
            )


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
        return _archive(path, lambda name: (path / name).read_bytes() if (path / name).is_file() else None)
    if path.name.endswith(TGZ_SUFFIXES):
        check_tar(path)
        with tarfile.open(path) as tf:
            files = {PurePosixPath(m.name).as_posix().lstrip("./"): m for m in tf.getmembers() if m.isfile()}
            # model-archiver's tgz puts everything under a top folder named after the model
            key = next((k for k in files if k == MANIFEST or k.endswith("/" + MANIFEST)), MANIFEST)
            prefix = key[: -len(MANIFEST)]

            def read_member(name: str) -> bytes | None:
                member = files.get(prefix + name)
                extracted = tf.extractfile(member) if member is not None else None
                return extracted.read() if extracted is not None else None

            return _archive(path, read_member)
    with check_zip(path) as zf:
        names = set(zf.namelist())
        return _archive(path, lambda name: zf.read(name) if name in names else None)


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
