"""KServe's model repository extension (what KServe's agent calls for each TrainedModel), on our operations.

``load(name)`` serves ``<storage dir>/<name>`` (whatever artifact it holds), and loading a
served name reloads it from its new files without a failed request; ``unload(name)``
removes every version (KServe's agent deletes the files first, so nothing here needs
them); ``index()`` lists every version with its state, as Triton's extension does. Both
work again and again, in any order. They read only the local storage directory, never a
URL, so the agent needs no key; ``TS_MODEL_REPOSITORY=off`` turns them off.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from ..errors import ManagementError, StartupError
from ..model_store.stage import stage
from .operations import Operations
from .security import check_name
from .sources import Sources

logger = logging.getLogger(__name__)


class RepositoryExtension(ModelRepositoryExtension):  # type: ignore[misc]
    def __init__(self, operations: Operations, sources: Sources, enabled: bool) -> None:
        super().__init__(model_registry=operations.registry)
        self._operations = operations
        self._sources = sources
        self._enabled = enabled

    def _check(self, name: str) -> None:
        if not self._enabled:
            raise ManagementError(403, "the model repository extension is off (TS_MODEL_REPOSITORY=off)")
        check_name(name)

    async def load(self, model_name: str) -> None:
        """Serve ``<storage dir>/<name>`` as ``name``, replacing what it served before."""
        self._check(model_name)
        source = self._sources.from_repository(model_name)
        work = self._sources.work_dir()
        ops = self._operations
        try:
            async with ops.lock:
                if model_name in ops.registry.models:
                    await self._reload(model_name, source, work)
                else:
                    await ops.add(source, work, str(source), model_name, None, {})
        except BaseException:
            self._sources.forget(work)
            raise

    async def unload(self, model_name: str) -> None:
        """Every version of ``name``, the default last (its files may be gone already: none are needed)."""
        self._check(model_name)
        ops = self._operations
        async with ops.lock:
            served = ops.registry.models.get(model_name)
            if served is None:
                raise ManagementError(404, f"Model not found: {model_name}")
            for version in sorted(served.versions, key=lambda v: v == served.default):
                await ops.remove(ops.registrations[(model_name, version)])

    async def _reload(self, name: str, source: Path, work: Path) -> None:
        """Serve ``source`` as ``name`` instead of every version it has now, without a failed request.

        The new files are registered beside the old ones (TorchServe cannot hold one version
        twice, so the same version is registered there as ``<version>-r<n>``), made the
        default once READY, and only then are the old versions taken out, drained and
        removed. Caller holds the lock.
        """
        ops = self._operations
        old = [r for r in ops.registrations.values() if r.spec.name == name]
        generation = max((r.generation for r in old), default=0) + 1
        taken = {r.ts_version for r in old}
        try:
            staged = await asyncio.to_thread(stage, source, work, ops.store_root, name, None,
                                             lambda v: f"{v}-r{generation}" if v in taken else v)
        except StartupError as exc:
            raise ManagementError(400, str(exc)) from None
        new = ops.registration(staged.spec, staged.ts_version, str(source), staged, generation)
        await ops.activate(new, make_default=True)
        for r in old:
            if r.spec.version != new.spec.version:
                ops.registry.remove(name, r.spec.version)
            del ops.registrations[(name, r.spec.version)]
        ops.registrations[(name, new.spec.version)] = new
        ops.registry.add(new.model, make_default=True)  # from here on requests reach the new files
        served = ops.registry.models[name]
        if served.split is not None:  # the versions it named are gone
            served.set_split(None)
        for r in old:
            await ops.retire(r)
        logger.info("reloaded model %s: version %s from %s", name, new.spec.version, source)

    async def index(self, filter_ready: Optional[bool] = False) -> List[Dict[str, Any]]:
        rows = [{"name": m.name, "version": m.version, "state": "READY" if m.ready else "UNAVAILABLE",
                 "reason": "" if m.ready else m.failure or "its workers are not READY"}
                for m in self._operations.registry.versions()]
        return [row for row in rows if row["state"] == "READY" or not filter_ready]
