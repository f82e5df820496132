"""Per-model settings: the seed's ``config.json`` and TorchServe's ``model-config.yaml``.

Both use TorchServe's names (batchSize, maxBatchDelay, responseTimeout, minWorkers,
maxWorkers). A model's own settings beat the global TS_* defaults; ``handler`` may
name the handler for a bare .pt/.pth (``handler: image_classifier``). In
model-config.yaml a ``handler:`` mapping is TorchServe's handler config, not a name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import StartupError

CONFIG_JSON = "config.json"
MODEL_CONFIG_YAML = "model-config.yaml"

# TorchServe key -> (ModelSpec field, minimum)
SPEC_KEYS: dict[str, tuple[str, int]] = {
    "batchSize": ("batch_size", 1),
    "maxBatchDelay": ("max_batch_delay", 0),
    "responseTimeout": ("response_timeout", 1),
    "minWorkers": ("min_workers", 1),
    "maxWorkers": ("max_workers", 1),
}


@dataclass(frozen=True)
class ModelSpec:
    """One model version as served, with the settings it asked for (None: the TS_* default)."""

    name: str  # the name served by TorchServe and by KServe
    version: str
    mar_name: str  # file (or directory) name inside the model store
    handler: str
    batch_size: int | None = None
    max_batch_delay: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    response_timeout: int | None = None
    default: bool = False  # the default version of its name (KServe's model_snapshot says so)
    traffic: Any = field(default=None, compare=False)  # a traffic split from its config.json / model-config.yaml


@dataclass(frozen=True)
class ModelConfig:
    settings: dict[str, int] = field(default_factory=dict)  # ModelSpec field -> value
    handler: str | None = None
    yaml_file: Path | None = None  # packed into a MAR we build, for TorchServe's own use
    traffic: Any = None  # the model's traffic split (management/traffic.py checks it), as written

    def merged(self, other: "ModelConfig") -> "ModelConfig":
        """``other`` wins where both say something."""
        return ModelConfig({**self.settings, **other.settings}, other.handler or self.handler,
                           other.yaml_file or self.yaml_file,
                           other.traffic if other.traffic is not None else self.traffic)


def settings_from(mapping: Mapping[str, Any], where: str) -> dict[str, int]:
    settings: dict[str, int] = {}
    for key, (name, minimum) in SPEC_KEYS.items():
        if key not in mapping:
            continue
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise StartupError(f"{where}: {key}={value!r} is invalid: expected an integer >= {minimum}")
        settings[name] = value
    if settings.get("max_workers", 1 << 30) < settings.get("min_workers", 0):
        raise StartupError(f"{where}: maxWorkers is below minWorkers")
    return settings


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise StartupError(f"{path} cannot be parsed: {exc}".replace("\n", " ")) from None
    data = data or {}
    if not isinstance(data, dict):
        raise StartupError(f"{path} must hold a mapping of settings (like {{\"batchSize\": 8}})")
    return data


def read_model_config(directory: Path) -> ModelConfig:
    """model-config.yaml, then config.json (which wins), from ``directory``."""
    config = ModelConfig()
    yaml_path = directory / MODEL_CONFIG_YAML
    if yaml_path.is_file():
        data = _load(yaml_path)
        handler = data.get("handler")
        config = ModelConfig(settings_from(data, str(yaml_path)), handler if isinstance(handler, str) else None,
                             yaml_path, data.get("traffic"))
    json_path = directory / CONFIG_JSON
    if json_path.is_file():
        data = _load(json_path)
        handler = data.get("handler")
        if handler is not None and not isinstance(handler, str):
            raise StartupError(f"{json_path}: handler must be a name or a file, like \"image_classifier\"")
        config = config.merged(ModelConfig(settings_from(data, str(json_path)), handler, traffic=data.get("traffic")))
    return config
