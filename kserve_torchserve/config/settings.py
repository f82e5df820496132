"""All configuration, parsed once: CLI flags (kserve's parser plus ours) and TS_* env -> Settings.

Precedence for a TorchServe key, lowest first: our defaults < the user's own
config.properties < TS_* environment < keys the wrapper must own (properties.py).
That is why an explicit TS_* value is kept apart from the default it replaces:
``TorchServeOptions`` holds only what the environment really set.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import ConfigError
from . import model_api
from .flags import DEFAULT_STORAGE_URI, build_parser
from .model_api import ModelApiOptions

__all__ = ["DEFAULT_STORAGE_URI", "Settings", "TorchServeOptions", "build_parser", "load_settings", "parse_ts_env"]

# Defaults from the table in KServe's PyTorch runtime documentation of environment variables.
DEFAULT_NUMBER_OF_GPU = 0
DEFAULT_MAX_REQUEST_SIZE = 6553600
DEFAULT_MAX_RESPONSE_SIZE = 6553600
DEFAULT_WORKERS_PER_MODEL = 1
DEFAULT_BATCH_SIZE = 1
DEFAULT_MAX_BATCH_DELAY_MS = 100
DEFAULT_RESPONSE_TIMEOUT_S = 120
DEFAULT_JOB_QUEUE_SIZE = 100  # TorchServe's own default for job_queue_size

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")

# KServe's controller sets these for its stock TorchServe runtime (SetTorchServeDefaults). We serve
# every protocol at once; TorchServe's KServe envelopes must never reach it (its workers would
# unwrap our requests as KServe bodies), so TS_SERVICE_ENVELOPE is read here, not passed through.
PROTOCOL_VERSIONS = ("v1", "v2", "grpc-v2")
SERVICE_ENVELOPES = ("kserve", "kservev2")
_OURS = ("TS_SERVICE_ENVELOPE",)

# TS_* variables with a meaning of their own; every other TS_FOO_BAR is passed to
# TorchServe as key foo_bar.
_INT_VARS: dict[str, tuple[str, int]] = {
    # env var: (field, minimum)
    "TS_NUMBER_OF_GPU": ("number_of_gpu", 0),
    "TS_MAX_REQUEST_SIZE": ("max_request_size", 1),
    "TS_MAX_RESPONSE_SIZE": ("max_response_size", 1),
    "TS_DEFAULT_WORKERS_PER_MODEL": ("default_workers_per_model", 1),
    "TS_BATCH_SIZE": ("batch_size", 1),
    "TS_MAX_BATCH_DELAY": ("max_batch_delay", 0),
    "TS_INITIAL_WORKERS_COUNT": ("initial_workers_count", 1),
    "TS_MAX_WORKERS_COUNT": ("max_workers_count", 1),
    "TS_DEFAULT_RESPONSE_TIMEOUT": ("default_response_timeout", 1),
    "TS_JOB_QUEUE_SIZE": ("job_queue_size", 1),
}


@dataclass(frozen=True)
class TorchServeOptions:
    """What the TS_* environment set; None means 'not set, use the lower tiers'."""

    number_of_gpu: int | None = None
    max_request_size: int | None = None
    max_response_size: int | None = None
    default_workers_per_model: int | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None
    initial_workers_count: int | None = None
    max_workers_count: int | None = None
    default_response_timeout: int | None = None
    job_queue_size: int | None = None
    load_models: str | None = None
    log_level: str = "INFO"
    config_file: Path | None = None  # TS_CONFIG_FILE: a user config.properties to merge
    passthrough: tuple[tuple[str, str], ...] = ()  # (torchserve_key, value), sorted

    @property
    def min_workers(self) -> int:
        if self.initial_workers_count is not None:
            return self.initial_workers_count
        return self.default_workers_per_model or DEFAULT_WORKERS_PER_MODEL

    @property
    def max_workers(self) -> int:
        if self.max_workers_count is not None:
            return self.max_workers_count
        return max(self.min_workers, self.default_workers_per_model or DEFAULT_WORKERS_PER_MODEL)


@dataclass(frozen=True)
class Settings:
    model_name: str | None  # None: name models after their archives
    storage_uri: str
    http_port: int
    grpc_port: int
    enable_grpc: bool
    grpc_max_threads: int
    grpc_max_send_message_length: int
    grpc_max_receive_message_length: int
    work_dir: Path | None  # None: a fresh temporary directory
    startup_timeout_s: float
    grace_period_s: float
    max_restarts: int
    restart_window_s: float
    health_interval_s: float
    max_unpacked_bytes: int
    fast_path: bool
    allow_no_models: bool
    request_per_instance: bool
    front_batching: bool = True  # batches made in our process (backend/batcher.py), not by TorchServe
    ts: TorchServeOptions = field(default_factory=TorchServeOptions)
    model_api: ModelApiOptions = field(default_factory=ModelApiOptions)
    protocol_version: str | None = None  # PROTOCOL_VERSION as KServe set it: informative, all are served
    service_envelope: str | None = None  # TS_SERVICE_ENVELOPE as KServe set it: accepted, never used


def _parse_int(var: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ConfigError(f"{var}={raw!r} is invalid: expected an integer >= {minimum}")
    return value


def parse_ts_env(env: Mapping[str, str]) -> TorchServeOptions:
    """Turn the TS_* variables of ``env`` into TorchServeOptions; ConfigError names a bad one."""
    values: dict[str, object] = {}
    passthrough: dict[str, str] = {}
    for var, raw in env.items():
        if not var.startswith("TS_") or var in model_api.VARIABLES or var in _OURS:  # for us, not TorchServe
            continue
        if var in _INT_VARS:
            name, minimum = _INT_VARS[var]
            values[name] = _parse_int(var, raw, minimum)
        elif var == "TS_LOG_LEVEL":
            level = raw.strip().upper()
            level = "WARN" if level == "WARNING" else level
            if level not in LOG_LEVELS:
                raise ConfigError(f"TS_LOG_LEVEL={raw!r} is invalid: expected one of {', '.join(LOG_LEVELS)}")
            values["log_level"] = level
        elif var == "TS_LOAD_MODELS":
            values["load_models"] = raw.strip() or None
        elif var == "TS_CONFIG_FILE":
            path = Path(raw)
            if not path.is_file():
                raise ConfigError(f"TS_CONFIG_FILE={raw!r} is invalid: expected a config.properties file that exists")
            values["config_file"] = path
        else:
            key = var[3:].lower()
            if not key:
                raise ConfigError("TS_ is not a valid variable: expected TS_<TORCHSERVE_KEY>")
            passthrough[key] = raw
    options = TorchServeOptions(passthrough=tuple(sorted(passthrough.items())), **values)  # type: ignore[arg-type]
    if options.max_workers < options.min_workers:
        raise ConfigError(
            f"TS_MAX_WORKERS_COUNT={options.max_workers} is invalid: expected an integer >= "
            f"the initial worker count {options.min_workers} (TS_INITIAL_WORKERS_COUNT / TS_DEFAULT_WORKERS_PER_MODEL)"
        )
    return options


def _kserve_env(env: Mapping[str, str], enable_grpc: bool) -> tuple[str | None, str | None]:
    """PROTOCOL_VERSION and TS_SERVICE_ENVELOPE, checked; ConfigError names a value KServe never sets."""
    protocol = env.get("PROTOCOL_VERSION", "").strip().lower() or None
    if protocol is not None and protocol not in PROTOCOL_VERSIONS:
        raise ConfigError(f"PROTOCOL_VERSION={env['PROTOCOL_VERSION']!r} is invalid: expected one of "
                          f"{', '.join(PROTOCOL_VERSIONS)} (all of them are served at once)")
    if protocol == "grpc-v2" and not enable_grpc:
        raise ConfigError("PROTOCOL_VERSION='grpc-v2' needs gRPC: drop --enable_grpc=false")
    envelope = env.get("TS_SERVICE_ENVELOPE", "").strip().lower() or None
    if envelope is not None and envelope not in SERVICE_ENVELOPES:
        raise ConfigError(f"TS_SERVICE_ENVELOPE={env['TS_SERVICE_ENVELOPE']!r} is not supported: KServe's protocols "
                          "are served natively, so TorchServe takes no envelope of yours; remove the variable")
    return protocol, envelope


def load_settings(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    parser_factory: Callable[[], argparse.ArgumentParser] = build_parser,
) -> Settings:
    env = os.environ if env is None else env
    args = parser_factory().parse_args(argv)
    if args.max_restarts < 0:
        raise ConfigError(f"--max_restarts={args.max_restarts} is invalid: expected an integer >= 0")
    if args.workers != 1:
        # kserve's flag would fork REST processes, but what is served (run-time registrations, A/B
        # splits, the canary guard) lives in one process, and TorchServe already uses the cores.
        raise ConfigError(f"--workers={args.workers} is not supported: this server runs one front process "
                          "next to TorchServe; scale with TS_DEFAULT_WORKERS_PER_MODEL or more replicas")
    storage_uri = args.storage_uri or env.get("STORAGE_URI") or DEFAULT_STORAGE_URI
    protocol_version, service_envelope = _kserve_env(env, args.enable_grpc)
    return Settings(
        model_name=args.model_name,
        storage_uri=storage_uri,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        grpc_max_threads=args.max_threads,
        grpc_max_send_message_length=args.grpc_max_send_message_length,
        grpc_max_receive_message_length=args.grpc_max_receive_message_length,
        work_dir=args.work_dir,
        startup_timeout_s=args.startup_timeout,
        grace_period_s=args.grace_period,
        max_restarts=args.max_restarts,
        restart_window_s=args.restart_window,
        health_interval_s=args.health_interval,
        max_unpacked_bytes=args.max_unpacked_bytes,
        fast_path=not args.disable_fast_path,
        allow_no_models=args.allow_no_models,
        request_per_instance=args.request_per_instance,
        front_batching=not args.torchserve_batching and not args.request_per_instance,
        ts=parse_ts_env(env),
        model_api=model_api.parse_model_api(env, storage_uri, args.enable_model_api, args.model_api_key_file),
        protocol_version=protocol_version,
        service_envelope=service_envelope,
    )
