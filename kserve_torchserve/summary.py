"""The block of lines logged once at start-up: what is served, on which ports, and how."""

from __future__ import annotations

from .backend.client import TorchServeClient
from .config.settings import Settings
from .errors import UpstreamError
from .management.service import Management


async def summary(settings: Settings, client: TorchServeClient, management: Management, props: dict[str, str],
                  threads: str) -> str:
    """Models with version, handler, workers, batching and device (asked of TorchServe); ports; switches."""
    import ts.version

    lines = [
        f"kserve-torchserve serving {settings.storage_uri} with TorchServe {ts.version.__version__}",
        f"  ports: http {settings.http_port}, grpc {settings.grpc_port if settings.enable_grpc else 'off'}"
        f" (TorchServe on loopback: {props['inference_address']}, grpc {props['grpc_inference_port']})",
        f"  number_of_gpu={props['number_of_gpu']}, torch threads per worker={threads}",
        f"  model management API: {'on' if settings.model_api.enabled else 'off'}, repository extension: "
        f"{'on' if settings.model_api.repository else 'off'}",
    ]
    for r in management.operations.registrations.values():
        if r.model.failure is not None:  # TorchServe unregisters a model whose workers could not load: not asked
            lines.append(f"  model {r.spec.name} v{r.spec.version}: not served: {r.model.failure}")
            continue
        try:
            (description, *_) = await client.describe(r.spec.name, r.ts_version) or [{}]
        except UpstreamError as exc:  # TorchServe restarting meanwhile: a log line never fails start-up
            lines.append(f"  model {r.spec.name} v{r.spec.version}: not described: {exc.message}")
            continue
        workers = description.get("workers") or []
        gpus = sum(1 for w in workers if w.get("gpu"))
        device = f"GPU ({gpus} of {len(workers)} workers)" if gpus else "CPU (no GPU assigned)"
        lines.append(
            f"  model {r.spec.name} v{r.spec.version}: handler {r.spec.handler or '?'}, workers {len(workers)} "
            f"(min {r.min_workers}, max {r.max_workers}), batch size {r.batch_size}, "
            f"max batch delay {r.max_batch_delay} ms{' (batched in front)' if r.model.batcher else ''}, response timeout {r.response_timeout} s, device {device}"
        )
    for name, served in sorted(management.registry.models.items()):
        if served.split is not None:
            lines.append(f"  model {name} traffic: {served.split.body()}")
    if not management.operations.registrations:
        lines.append("  no models yet: register them with POST /models or the v2 repository extension")
    return "\n".join(lines)
