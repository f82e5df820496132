"""Management's parts built together: registry, operations, sources, the HTTP API, the repository extension.

server.py builds one ``Management`` after TorchServe's configuration is written and before
TorchServe starts; the supervisor gets ``operations.restore`` as its ``on_started``
callback (it lives below us and never imports us), the REST server gets ``api.routes()``,
the gRPC server ``grpc_handlers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc

from ..backend.client import TorchServeClient
from ..backend.model_admin import ModelAdmin
from ..config.model_config import ModelSpec
from ..config.properties import model_entry
from ..config.settings import Settings
from ..model_store.fetch_child import fetch_in_child
from ..model_store.url_policy import UrlPolicy
from ..serving.grpc_repository import RepositoryHandlers
from ..serving.model import TorchServeModel
from .api import ManagementApi
from .operations import Operations
from .registration import LoadFailure, no_load_failure
from .registration import Limits
from .registry import ModelRegistry
from .repository import RepositoryExtension
from .security import Gate
from .sources import Sources


@dataclass
class Management:
    registry: ModelRegistry
    operations: Operations
    repository: RepositoryExtension
    api: ManagementApi
    grpc_handlers: dict[str, grpc.RpcMethodHandler]


def batched_in_front(entry: dict[str, Any]) -> tuple[int, int, int] | None:
    """(batch size, max batch delay ms, workers) for our batcher (backend/batcher.py), from a model's
    TorchServe settings; None when there is nothing to batch (batch size 1)."""
    size = int(entry["batchSize"])
    return (size, int(entry["maxBatchDelay"]), int(entry["minWorkers"])) if size > 1 else None


def build_management(
    settings: Settings, client: TorchServeClient, work_root: Path, store_root: Path, storage_dir: Path | None,
    props: dict[str, str], backend_up: Callable[[], bool], latency_logging: bool, per_request: bool = True,
    front_batching: bool = True, load_failure: LoadFailure = no_load_failure,
) -> Management:
    """Everything that decides what is served, wired to one TorchServe client."""
    response_timeout = int(props["default_response_timeout"])
    max_rows = int(props["job_queue_size"])  # TorchServe's queue: a bigger request can never be queued whole

    def make_model(spec: ModelSpec, timeout_s: float, ts_version: str) -> TorchServeModel:
        batching = batched_in_front(model_entry(spec, settings.ts, response_timeout)) if front_batching else None
        model = TorchServeModel(spec, client, timeout_s, max_rows, ts_version, per_request, batching)
        model.enable_latency_logging = latency_logging  # kserve's per-request line with the request id: DEBUG
        return model

    registry = ModelRegistry()
    operations = Operations(
        registry, ModelAdmin(client, props["management_address"], settings.startup_timeout_s), store_root,
        Limits(settings.model_api.max_models, settings.grace_period_s),
        entry_for=lambda spec: model_entry(spec, settings.ts, response_timeout),
        make_model=make_model, backend_up=backend_up, load_failure=load_failure,
    )
    patterns = settings.model_api.allowed_urls

    async def fetch(url: str, download_dir: Path, allowed: tuple[str, ...]) -> Path:
        return await fetch_in_child(url, download_dir, settings.max_unpacked_bytes, settings.ts.log_level, allowed)

    sources = Sources(work_root / "registrations", store_root, storage_dir, UrlPolicy(patterns), patterns, fetch)
    repository = RepositoryExtension(operations, sources, settings.model_api.repository)
    api = ManagementApi(operations, sources, Gate(settings.model_api), repository, client.describe)
    return Management(registry, operations, repository, api, RepositoryHandlers(repository).handlers)
