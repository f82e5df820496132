"""Settings -> TorchServe's config.properties, and each model's settings. Pure functions: no I/O.

Precedence, lowest first: our defaults < the user's config.properties < TS_* env
< keys the wrapper must own (addresses, ports, model store, model list). Owned keys
are what makes TorchServe reachable only by us, on loopback, on ports we chose.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .model_config import ModelSpec
from .settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_JOB_QUEUE_SIZE,
    DEFAULT_MAX_BATCH_DELAY_MS,
    DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_NUMBER_OF_GPU,
    DEFAULT_RESPONSE_TIMEOUT_S,
    DEFAULT_WORKERS_PER_MODEL,
    TorchServeOptions,
)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int


# Keys no user setting may change, and why: the wrapper must reach TorchServe on
# loopback ports it picked, TorchServe must load exactly the models we register (and
# download nothing: allowed_urls), and it must not re-read TS_* itself
# (enable_envvars_config) behind our back.
OWNED_KEYS = frozenset(
    {
        "inference_address",
        "management_address",
        "metrics_address",
        "grpc_inference_address",
        "grpc_management_address",
        "grpc_inference_port",
        "grpc_management_port",
        "enable_grpc_ssl",
        "model_store",
        "load_models",
        "models",
        "model_snapshot",
        "enable_envvars_config",
        "metrics_mode",
        "enable_model_api",
        "allowed_urls",
        "service_envelope",
    }
)

ENVELOPE = "kserve_torchserve"  # model_store/handlers/rows_envelope.py, as TorchServe's workers know it

# A regular expression no URL matches: TorchServe must never download anything itself.
NO_URL = "(?!)"


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java-properties text the way TorchServe reads it (key=value or key: value, # comments)."""
    props: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", "!")):
            continue
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            props[line] = ""
        else:
            props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


def _defaults() -> dict[str, str]:
    return {
        "number_of_gpu": str(DEFAULT_NUMBER_OF_GPU),
        "max_request_size": str(DEFAULT_MAX_REQUEST_SIZE),
        "max_response_size": str(DEFAULT_MAX_RESPONSE_SIZE),
        "default_workers_per_model": str(DEFAULT_WORKERS_PER_MODEL),
        "default_response_timeout": str(DEFAULT_RESPONSE_TIMEOUT_S),
        "job_queue_size": str(DEFAULT_JOB_QUEUE_SIZE),
    }


def _from_env(ts: TorchServeOptions) -> dict[str, str]:
    explicit = {
        "number_of_gpu": ts.number_of_gpu,
        "max_request_size": ts.max_request_size,
        "max_response_size": ts.max_response_size,
        "default_workers_per_model": ts.default_workers_per_model,
        "default_response_timeout": ts.default_response_timeout,
        "job_queue_size": ts.job_queue_size,
    }
    props = {key: str(value) for key, value in explicit.items() if value is not None}
    props.update(ts.passthrough)
    return props


def model_entry(spec: ModelSpec, ts: TorchServeOptions, response_timeout: int) -> dict[str, object]:
    """One model's settings, in TorchServe's names: the spec's own values win over TS_* defaults."""
    min_workers = spec.min_workers if spec.min_workers is not None else ts.min_workers
    max_workers = spec.max_workers if spec.max_workers is not None else max(ts.max_workers, min_workers)
    return {
        "defaultVersion": True,
        "marName": spec.mar_name,
        "minWorkers": min_workers,
        "maxWorkers": max_workers,
        "batchSize": spec.batch_size if spec.batch_size is not None else (ts.batch_size or DEFAULT_BATCH_SIZE),
        "maxBatchDelay": (
            spec.max_batch_delay
            if spec.max_batch_delay is not None
            else (ts.max_batch_delay if ts.max_batch_delay is not None else DEFAULT_MAX_BATCH_DELAY_MS)
        ),
        "responseTimeout": spec.response_timeout if spec.response_timeout is not None else response_timeout,
    }


def effective_properties(
    ts: TorchServeOptions,
    ports: Ports,
    model_store: str,
    user_text: str = "",
    envelope: bool = True,
) -> dict[str, str]:
    """Every key TorchServe will see, after applying the precedence tiers.

    TorchServe starts with no models: the runtime registers each one through TorchServe's
    management API (management/operations.py), with the settings ``model_entry`` resolves,
    so that a restarted TorchServe gets back exactly what was served, run-time changes
    included. Its model API is on for that, reachable only by us (loopback, token), and
    its ``allowed_urls`` match nothing: it never downloads, we fetch and it loads files.
    """
    props = _defaults()
    props.update({k: v for k, v in parse_properties(user_text).items() if k not in OWNED_KEYS})
    props.update({k: v for k, v in _from_env(ts).items() if k not in OWNED_KEYS})
    for key in ("default_response_timeout", "job_queue_size"):  # we use these two ourselves
        if not props[key].strip().isdigit() or int(props[key]) < 1:
            raise ConfigError(f"{key}={props[key]!r} in config.properties is invalid: expected an integer >= 1")
    props.update(
        {
            "inference_address": f"http://{LOOPBACK}:{ports.inference}",
            "management_address": f"http://{LOOPBACK}:{ports.management}",
            "metrics_address": f"http://{LOOPBACK}:{ports.metrics}",
            "grpc_inference_address": LOOPBACK,
            "grpc_management_address": LOOPBACK,
            "grpc_inference_port": str(ports.grpc_inference),
            "grpc_management_port": str(ports.grpc_management),
            "enable_grpc_ssl": "false",
            "model_store": model_store,
            "enable_envvars_config": "false",
            "enable_model_api": "true",
            "allowed_urls": NO_URL,
            "metrics_mode": "prometheus",
        }
    )
    if envelope:  # one TorchServe request per client request, split into rows in the worker
        props["service_envelope"] = ENVELOPE
    return props


def render_properties(props: dict[str, str]) -> str:
    """config.properties text for the keys effective_properties() settled on."""
    lines = ["# Written by kserve-torchserve; edits are overwritten at start-up."]
    lines += [f"{key}={value}" for key, value in sorted(props.items())]
    return "\n".join(lines) + "\n"
