"""Settings of the run-time model management (the ``/models`` API and the v2 repository extension).

Safe by default: the ``/models`` writes (register, unregister, scale, set-default,
traffic) are off until ``TS_ENABLE_MODEL_API=true`` (TorchServe's own knob) or
``--enable_model_api``; on, they need a key (``TS_MODEL_API_KEY``, e.g. a Kubernetes
Secret as env, or ``--model_api_key_file``), and a ``url`` must fully match one of
``TS_ALLOWED_URLS`` (TorchServe's knob: comma-separated regular expressions; default:
the ``--storage_uri`` location only). ``TS_MAX_MODELS`` caps the model versions served.
The v2 repository ``load``/``unload`` (what KServe's agent calls, without a key) read
only the local storage directory; ``TS_MODEL_REPOSITORY=off`` turns them off.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from ..errors import ConfigError

DEFAULT_MAX_MODELS = 64
_MIN_KEY_CHARS = 16  # a guessable key is no key
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_FILE_SUFFIXES = (".mar", ".pt", ".pth", ".tar.gz", ".tgz", ".zip", ".tar")


@dataclass(frozen=True)
class ModelApiOptions:
    enabled: bool = False
    key: str | None = None
    allowed_urls: tuple[str, ...] = ()  # full-match regular expressions
    max_models: int = DEFAULT_MAX_MODELS
    repository: bool = True  # the v2 repository extension's load/unload
    traffic: Mapping[str, Any] = field(default_factory=dict)  # TS_TRAFFIC_SPLIT: model name -> split


def parse_bool(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{var}={raw!r} is invalid: expected true or false")


def storage_location_patterns(storage_uri: str) -> tuple[str, ...]:
    """The default allow-list: the storage URI's directory (or bucket prefix) and what is below it.

    A URI naming a file (``.../digits.mar``) allows its directory; a local path is
    allowed both as a path and as a ``file://`` URL.
    """
    uri = storage_uri.rstrip("/") or "/"
    if uri.endswith(_FILE_SUFFIXES):
        uri = uri.rsplit("/", 1)[0]
    if "://" not in uri:
        local = str(Path(uri).absolute())
        return (re.escape(local) + "(/.*)?", re.escape("file://" + local) + "(/.*)?")
    parts = urlsplit(uri)
    base = f"{parts.scheme.lower()}://{parts.netloc.rsplit('@', 1)[-1].lower()}{parts.path.rstrip('/')}"
    return (re.escape(base) + "(/.*)?",)


def _compile_all(var: str, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{var}: {pattern!r} is not a valid regular expression ({exc})") from None


def parse_model_api(
    env: Mapping[str, str], storage_uri: str, enable_flag: bool = False, key_file: Path | None = None
) -> ModelApiOptions:
    """ModelApiOptions from the environment and flags; ConfigError names what is wrong and how to fix it."""
    enabled = enable_flag or parse_bool("TS_ENABLE_MODEL_API", env.get("TS_ENABLE_MODEL_API", "false"))
    key = env.get("TS_MODEL_API_KEY") or None
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--model_api_key_file={key_file} cannot be read: {exc.strerror}") from None
    if key is not None and len(key.strip()) < _MIN_KEY_CHARS:
        raise ConfigError(f"the model API key is shorter than {_MIN_KEY_CHARS} characters: use a random one, "
                          "e.g. openssl rand -hex 32")
    if enabled and key is None:
        raise ConfigError("the model API is enabled (TS_ENABLE_MODEL_API) but has no key: set TS_MODEL_API_KEY "
                          "(e.g. from a Kubernetes Secret) or --model_api_key_file")
    raw_urls = env.get("TS_ALLOWED_URLS", "").strip()
    allowed = tuple(p.strip() for p in raw_urls.split(",") if p.strip()) if raw_urls else (
        storage_location_patterns(storage_uri))
    _compile_all("TS_ALLOWED_URLS", allowed)
    max_models = env.get("TS_MAX_MODELS", str(DEFAULT_MAX_MODELS))
    try:
        limit = int(max_models.strip())
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"TS_MAX_MODELS={max_models!r} is invalid: expected an integer >= 1")
    repository = parse_bool("TS_MODEL_REPOSITORY", env.get("TS_MODEL_REPOSITORY", "on"))
    return ModelApiOptions(enabled, key.strip() if key else None, allowed, limit, repository,
                           _traffic(env.get("TS_TRAFFIC_SPLIT", "")))


def _traffic(raw: str) -> dict[str, Any]:
    """TS_TRAFFIC_SPLIT: JSON, model name -> split (checked against the served versions at start-up)."""
    if not raw.strip():
        return {}
    try:
        splits = json.loads(raw)
    except ValueError:
        splits = None
    if not isinstance(splits, dict) or not all(isinstance(v, dict) for v in splits.values()):
        raise ConfigError('TS_TRAFFIC_SPLIT is invalid: expected JSON like {"digits": {"1.0": 80, "2.0": 20}}')
    return splits


# The variables parse_model_api reads: they configure us, never TorchServe directly.
VARIABLES = ("TS_ENABLE_MODEL_API", "TS_MODEL_API_KEY", "TS_ALLOWED_URLS", "TS_MAX_MODELS", "TS_MODEL_REPOSITORY",
             "TS_TRAFFIC_SPLIT")
