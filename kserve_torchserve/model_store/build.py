"""Downloaded artifacts -> a TorchServe model store, plus one ModelSpec per model.

Where models are looked for: the storage directory itself, its ``model-store/``
(KServe's TorchServe layout, with ``config/config.properties``), and each of its
subdirectories (one model per directory for multi-model storage). Archives are
linked into the store (never copied); bare .pt/.pth models are archived into it.
Specs carry only what the user configured per model; None falls back to the
global TS_* defaults when config/properties.py renders them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import archiver
from .artifacts import MANIFEST, TGZ_SUFFIXES, Archive, EagerModel, Source, TorchScriptModel, find_sources, read_archive
from ..errors import StartupError
from ..config.model_config import ModelConfig, ModelSpec, read_model_config, settings_from
from ..config.properties import parse_properties

logger = logging.getLogger(__name__)

KSERVE_STORE_DIR = "model-store"
KSERVE_CONFIG = Path("config") / "config.properties"
_SKIP_DIRS = {KSERVE_STORE_DIR, "config"}


@dataclass(frozen=True)
class ModelStore:
    path: Path
    specs: tuple[ModelSpec, ...]
    user_properties: Path | None  # the user's own config.properties, if the storage dir has one


@dataclass(frozen=True)
class Candidate:
    """A model found in storage, before selection and archiving."""

    name: str
    version: str
    source: Source
    config: ModelConfig
    file_name: str  # what TS_LOAD_MODELS and model_snapshot's marName refer to
    default: bool = False  # model_snapshot's defaultVersion


def _source_file(source: Source) -> Path:
    if isinstance(source, Archive):
        return source.path
    return source.path if isinstance(source, TorchScriptModel) else source.weights


def _candidates_in(directory: Path, default_name: str | None) -> list[Candidate]:
    sources = find_sources(directory)
    config = read_model_config(directory)
    bare = [s for s in sources if not isinstance(s, Archive)]
    found = []
    for source in sources:
        if isinstance(source, Archive):
            settings = {**settings_from(source.archive_config, f"{source.path}:model-config.yaml"), **config.settings}
            found.append(Candidate(source.name, source.version, source, replace(config, settings=settings),
                                   source.path.name))
        else:
            stem = _source_file(source).stem
            name = default_name if default_name and len(bare) == 1 else stem
            found.append(Candidate(name, "1.0", source, config, _source_file(source).name))
    return found


def discover(storage: Path) -> list[Candidate]:
    if storage.is_file() and (storage.suffix == ".mar" or storage.name.endswith(TGZ_SUFFIXES)) or (
        storage.is_dir() and (storage / MANIFEST).is_file()  # a no-archive model directory itself
    ):
        archive = read_archive(storage)
        settings = settings_from(archive.archive_config, f"{storage}:model-config.yaml")
        return [Candidate(archive.name, archive.version, archive, ModelConfig(settings), storage.name)]
    if storage.is_file():
        return [c for c in _candidates_in(storage.parent, None) if _source_file(c.source) == storage]
    found = _candidates_in(storage, None)
    if (storage / KSERVE_STORE_DIR).is_dir():
        found += _candidates_in(storage / KSERVE_STORE_DIR, None)
    for sub in sorted(p for p in storage.iterdir() if p.is_dir()):
        if sub.name in _SKIP_DIRS or sub.name.startswith(".") or any(
            isinstance(c.source, Archive) and c.source.path == sub for c in found
        ):
            continue
        found += _candidates_in(sub, sub.name)
    return found


def _apply_snapshot(found: list[Candidate], properties: dict[str, str], where: Path) -> list[Candidate]:
    """KServe's config.properties lists models in model_snapshot (or models): load those, as named there."""
    raw = properties.get("model_snapshot") or properties.get("models")
    if not raw:
        return found
    try:
        data = json.loads(raw)
    except ValueError:
        raise StartupError(f"{where}: model_snapshot is not valid JSON") from None
    models: dict[str, Any] = data.get("models", data) if isinstance(data, dict) else {}
    chosen = []
    for name, versions in models.items():
        for version, entry in (versions or {}).items():
            mar = str(entry.get("marName", f"{name}.mar"))
            match = next((c for c in found if mar in (c.file_name, c.name)), None)
            if match is None:
                raise StartupError(f"{where} lists {name} ({mar}), which is not in the storage: add it or remove it")
            settings = {**match.config.settings, **settings_from(entry, f"{where}: model {name}")}
            chosen.append(replace(match, name=name, version=str(version), config=replace(match.config, settings=settings),
                                  default=bool(entry.get("defaultVersion"))))
    return chosen


def select_models(found: list[Candidate], load_models: str | None) -> tuple[list[Candidate], bool]:
    """Apply TS_LOAD_MODELS (TorchServe's form: ``all``, or ``file.mar,name=file.mar,...``).

    An entry matches a model by file name (suffix optional) or by its name. Returns
    the selection and whether any entry named a model explicitly.
    """
    if load_models is None or load_models.strip().lower() == "all":
        return found, False
    selected: list[Candidate] = []
    renamed = False
    for entry in (e.strip() for e in load_models.split(",")):
        if not entry:
            continue
        name, _, target = entry.rpartition("=")
        matches = [c for c in found if target in (c.file_name, c.file_name.split(".")[0], c.name)]
        if not matches:
            available = ", ".join(f"{c.file_name} ({c.name})" for c in found)
            raise StartupError(
                f"TS_LOAD_MODELS entry {entry!r} matches no model; available: {available}. "
                "Use all, file.mar or name=file.mar, comma-separated"
            )
        selected += [replace(c, name=name) if name else c for c in matches]
        renamed = renamed or bool(name)
    return selected, renamed


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.is_dir():
        shutil.rmtree(dst)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # file systems without symlinks
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def build_model_store(
    storage: Path, store_dir: Path, model_name: str | None = None, load_models: str | None = None,
    allow_empty: bool = False,
) -> ModelStore:
    """Find the models under ``storage`` and lay out ``store_dir`` for TorchServe.

    ``load_models`` (TS_LOAD_MODELS, else the user's load_models) selects and renames;
    ``model_name`` renames a single model otherwise (KServe passes the InferenceService name).
    ``allow_empty``: no model is no error (models come at run time).
    """
    found = discover(storage)
    if not found and allow_empty:
        store_dir.mkdir(parents=True, exist_ok=True)
        return ModelStore(store_dir, (), None)
    if not found:
        raise StartupError(
            f"no model found in {storage}: expected a .mar/.tar.gz archive, a TorchScript .pt, or model.py with "
            f"its state dict (.pth) there, in {KSERVE_STORE_DIR}/, or in a subdirectory per model "
            "(or start with --allow_no_models and add models at run time)"
        )
    user_file = storage / KSERVE_CONFIG if storage.is_dir() else None
    user_properties = user_file if user_file and user_file.is_file() else None
    if user_properties is not None:
        properties = parse_properties(user_properties.read_text())
        found = _apply_snapshot(found, properties, user_properties)
        load_models = load_models or properties.get("load_models")
    chosen, renamed = select_models(found, load_models)
    if model_name is not None and not renamed:
        if len(chosen) == 1:
            chosen = [replace(chosen[0], name=model_name)]
        else:
            logger.warning("--model_name=%s ignored: %d models are served, each under its own name",
                           model_name, len(chosen))
    seen: dict[tuple[str, str], str] = {}
    for candidate in chosen:
        key = (candidate.name, candidate.version)
        if key in seen:
            raise StartupError(
                f"{candidate.file_name} and {seen[key]} both hold model {candidate.name} version "
                f"{candidate.version}: remove one, or name them apart with TS_LOAD_MODELS=name=file,..."
            )
        seen[key] = candidate.file_name
    archiver.check_archive_weights(sorted({c.source.path for c in chosen
                                           if isinstance(c.source, Archive) and c.source.pickled_weights}))
    store_dir.mkdir(parents=True, exist_ok=True)
    return ModelStore(store_dir, tuple(_place(c, store_dir) for c in chosen), user_properties)


def _place(candidate: Candidate, store_dir: Path) -> ModelSpec:
    """Put one model into the store (link an archive, archive a bare model) and describe it."""
    source = candidate.source
    if isinstance(source, Archive):
        target = store_dir / source.path.name
        if target.exists() and target.resolve() != source.path.resolve():
            raise StartupError(f"two archives are named {source.path.name}: rename one")
        _link(source.path, target)
        mar_name, handler = source.path.name, source.handler
    else:
        assert isinstance(source, (TorchScriptModel, EagerModel))
        built, handler = archiver.build_mar(source, candidate.name, candidate.version, candidate.config,
                                            store_dir / ".built" / candidate.name)
        mar_name = f"{candidate.name}.mar"
        if (store_dir / mar_name).exists() and not (store_dir / mar_name).is_symlink():
            raise StartupError(f"two models would be archived as {mar_name}: give them different names")
        _link(built, store_dir / mar_name)
    return ModelSpec(name=candidate.name, version=candidate.version, mar_name=mar_name,
                     handler=Path(handler).name if handler.endswith(".py") else handler,
                     default=candidate.default, traffic=candidate.config.traffic, **candidate.config.settings)
