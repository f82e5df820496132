"""Downloaded artifacts -> a TorchServe model store of .mar files, plus one ModelSpec per model.

The store holds links to the user's archives (never copies of large files) under
the names TorchServe will load. Specs carry only what the user configured per model;
None falls back to the global TS_* defaults when properties.py renders them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import StartupError

logger = logging.getLogger(__name__)

MANIFEST = "MAR-INF/MANIFEST.json"
# KServe's documented TorchServe layout: <storage>/config/config.properties + <storage>/model-store/*.mar
KSERVE_STORE_DIR = "model-store"
KSERVE_CONFIG = Path("config") / "config.properties"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name served by TorchServe and by KServe
    version: str
    mar_name: str  # file name inside the model store
    handler: str
    batch_size: int | None = None
    max_batch_delay: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    response_timeout: int | None = None


@dataclass(frozen=True)
class ModelStore:
    path: Path
    specs: tuple[ModelSpec, ...]
    user_properties: Path | None  # the user's own config.properties, if the storage dir has one


def read_manifest(mar: Path) -> dict[str, object]:
    """The MAR's MANIFEST.json; StartupError names the file and the fix when it is not a MAR."""
    try:
        with zipfile.ZipFile(mar) as zf:
            raw = zf.read(MANIFEST)
    except zipfile.BadZipFile:
        raise StartupError(f"{mar} is not a valid .mar (zip) file: rebuild it with torch-model-archiver") from None
    except KeyError:
        raise StartupError(f"{mar} has no {MANIFEST}: rebuild it with torch-model-archiver") from None
    try:
        manifest = json.loads(raw)
        model = manifest["model"]
        model["modelName"]
    except (ValueError, KeyError, TypeError):
        raise StartupError(f"{mar}: {MANIFEST} is not a valid TorchServe manifest (needs model.modelName)") from None
    return manifest  # type: ignore[no-any-return]


def _find_mars(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix == ".mar" else []
    candidates = sorted(root.glob("*.mar")) + sorted((root / KSERVE_STORE_DIR).glob("*.mar"))
    return [p for p in candidates if p.is_file()]


def _spec_from_mar(mar: Path) -> ModelSpec:
    manifest = read_manifest(mar)
    model = manifest["model"]
    assert isinstance(model, dict)
    return ModelSpec(
        name=str(model["modelName"]),
        version=str(model.get("modelVersion") or "1.0"),
        mar_name=mar.name,
        handler=str(model.get("handler", "")),
    )


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)  # file systems without symlinks


def select_models(
    found: list[tuple[ModelSpec, Path]], load_models: str | None
) -> tuple[list[tuple[ModelSpec, Path]], bool]:
    """Apply TS_LOAD_MODELS (TorchServe's form: ``all``, or ``file.mar,name=file.mar,...``).

    An entry matches a model by file name (``.mar`` optional) or by the name in its
    manifest. Returns the selection and whether any entry named the model explicitly.
    """
    if load_models is None or load_models.strip().lower() == "all":
        return found, False
    selected: list[tuple[ModelSpec, Path]] = []
    renamed = False
    for entry in (e.strip() for e in load_models.split(",")):
        if not entry:
            continue
        name, _, target = entry.rpartition("=")
        matches = [(s, p) for s, p in found if target in (p.name, p.stem, s.name)]
        if not matches:
            available = ", ".join(f"{p.name} ({s.name})" for s, p in found)
            raise StartupError(
                f"TS_LOAD_MODELS entry {entry!r} matches no model; available: {available}. "
                "Use all, file.mar or name=file.mar, comma-separated"
            )
        for spec, path in matches:
            selected.append((replace(spec, name=name) if name else spec, path))
        renamed = renamed or bool(name)
    return selected, renamed


def build_model_store(
    storage_dir: Path, store_dir: Path, model_name: str | None = None, load_models: str | None = None
) -> ModelStore:
    """Find the models under ``storage_dir`` and lay out ``store_dir`` for TorchServe.

    ``load_models`` (TS_LOAD_MODELS) selects and renames; ``model_name`` renames a
    single model otherwise (KServe passes the InferenceService name).
    """
    mars = _find_mars(storage_dir)
    if not mars:
        raise StartupError(
            f"no model found in {storage_dir}: expected a .mar archive there or in "
            f"{KSERVE_STORE_DIR}/ (build one with torch-model-archiver)"
        )
    chosen, renamed = select_models([(_spec_from_mar(mar), mar) for mar in mars], load_models)
    specs = [spec for spec, _ in chosen]
    mars = [mar for _, mar in chosen]
    if model_name is not None and not renamed:
        if len(specs) == 1:
            specs = [replace(specs[0], name=model_name)]
        else:
            logger.warning(
                "--model_name=%s ignored: %d models found, each is served under its own name",
                model_name,
                len(specs),
            )
    seen: dict[tuple[str, str], Path] = {}  # (name, version) -> archive
    for spec, mar in zip(specs, mars):
        key = (spec.name, spec.version)
        if key in seen:
            raise StartupError(
                f"{mar} and {seen[key]} both hold model {spec.name} version {spec.version}: "
                "remove one or give them different versions"
            )
        seen[key] = mar
    store_dir.mkdir(parents=True, exist_ok=True)
    linked: dict[str, Path] = {}
    for mar in dict.fromkeys(mars):  # one archive may be loaded under two names
        if mar.name in linked:
            raise StartupError(f"{mar} and {linked[mar.name]} have the same file name: rename one")
        linked[mar.name] = mar
        _link(mar, store_dir / mar.name)
    user_properties = storage_dir / KSERVE_CONFIG if storage_dir.is_dir() else None
    return ModelStore(
        path=store_dir,
        specs=tuple(specs),
        user_properties=user_properties if user_properties and user_properties.is_file() else None,
    )
