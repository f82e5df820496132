"""TorchServe's metrics.yaml: its own declarations plus the user's (custom handler metrics).

TorchServe exports only metrics its metrics config declares, so a handler's custom
metrics need declaring; a user file given alone would drop all of TorchServe's own, so
the two are merged.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StartupError

USER_FILES = ("metrics.yaml", "config/metrics.yaml")  # where a storage dir may declare them


def torchserve_default() -> Path:
    """The metrics.yaml shipped with the installed TorchServe."""
    import ts

    return Path(ts.__file__).parent / "configs" / "metrics.yaml"


def user_metrics_file(storage_dir: Path) -> Path | None:
    """The user's declarations in a storage directory, if it has any."""
    if not storage_dir.is_dir():
        return None
    return next((storage_dir / name for name in USER_FILES if (storage_dir / name).is_file()), None)


def merged_metrics_config(default: Path, user: Path, out: Path) -> Path:
    """TorchServe's own metrics.yaml plus the user's declarations (custom handler metrics).

    TorchServe exports only metrics its metrics config declares, and a user file given
    alone would drop all of TorchServe's defaults; so the user's entries are added to
    TorchServe's, section by section, and win on the same name.
    """
    import yaml

    merged = yaml.safe_load(default.read_text()) or {}
    extra = yaml.safe_load(user.read_text()) or {}
    if not isinstance(extra, dict):
        raise StartupError(f"{user} must be a TorchServe metrics config (a mapping with model_metrics: ...)")
    merged["dimensions"] = list(dict.fromkeys([*(merged.get("dimensions") or []), *(extra.get("dimensions") or [])]))
    for section in ("ts_metrics", "model_metrics"):
        for kind, entries in (extra.get(section) or {}).items():
            current = {e["name"]: e for e in ((merged.setdefault(section, {}) or {}).get(kind) or [])}
            current.update({e["name"]: e for e in entries or []})
            merged[section][kind] = list(current.values())
    out.write_text(yaml.safe_dump(merged, sort_keys=False))
    return out
