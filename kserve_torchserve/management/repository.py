"""KServe's model repository extension (what KServe's agent calls for each TrainedModel), on our operations.

``load(name)`` serves ``<storage dir>/<name>`` (whatever artifact it holds), and loading a
served name reloads it from its new files without a failed request; ``unload(name)``
removes every version (KServe's agent deletes the files first, so nothing here needs
them); ``index()`` lists every version with its state, as Triton's extension does. Both
work again and again, in any order. They read only the local storage directory, never a
URL, so the agent needs no key; ``TS_MODEL_REPOSITORY=off`` turns them off.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from ..errors import ManagementError
from .operations import Operations
from .security import check_name
from .sources import Sources


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
        self._check(model_name)
        source = self._sources.from_repository(model_name)
        work = self._sources.work_dir()
        try:
            await self._operations.load(model_name, source, work)
        except BaseException:
            self._sources.forget(work)
            raise

    async def unload(self, model_name: str) -> None:
        self._check(model_name)
        await self._operations.unload(model_name)

    async def index(self, filter_ready: Optional[bool] = False) -> List[Dict[str, Any]]:
        rows = [{"name": m.name, "version": m.version, "state": "READY" if m.ready else "UNAVAILABLE",
                 "reason": "" if m.ready else "its workers are not READY"}
                for m in self._operations.registry.versions()]
        return [row for row in rows if row["state"] == "READY" or not filter_ready]
