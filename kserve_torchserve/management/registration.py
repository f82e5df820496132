"""One model version as TorchServe has it registered, and the calls that put it there.

Kept apart from ``operations.py`` (which decides *when* to make these calls, under its lock)
so that a registration's settings and its three TorchServe calls read in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..backend.model_admin import ModelAdmin
from ..config.model_config import ModelSpec
from ..model_store.stage import Staged
from ..serving.model import TorchServeModel

logger = logging.getLogger(__name__)

# (name, TorchServe version) -> why its workers could not load, from TorchServe's log; None if it
# never says (backend/worker_log.py's LoadFailures.wait_reason, which waits for late lines).
LoadFailure = Callable[[str, str], Awaitable["str | None"]]


async def no_load_failure(name: str, version: str) -> str | None:
    """A LoadFailure with no log to read: TorchServe's answer stands alone."""
    return None


@dataclass(frozen=True)
class Limits:
    max_models: int  # model versions served at once (TS_MAX_MODELS)
    grace_s: float  # how long a removed version may drain


@dataclass
class Registration:
    """One model version as TorchServe has it registered."""

    spec: ModelSpec  # the served name and version; mar_name: its model store entry
    ts_version: str  # the version in its manifest (differs after an in-place reload)
    url: str  # where it came from, as the describe API shows it (no credentials)
    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay: int
    response_timeout: int
    model: TorchServeModel
    staged: Staged | None = None  # files a run-time registration owns; None for start-up files
    generation: int = 0

    async def register_in(self, admin: ModelAdmin) -> None:
        """Into TorchServe with every setting; ManagementError with TorchServe's status when refused."""
        # Batched in our process (backend/batcher.py), each TorchServe request is a batch already, so
        # TorchServe must not wait for more: delay 0. Its batch size stays the model's, which the handler
        # reads (context.system_properties) and TorchServe's describe shows.
        delay = 0 if self.model.batcher is not None else self.max_batch_delay
        await admin.register(self.spec.mar_name, self.spec.name, self.ts_version, self.batch_size, delay,
                             self.min_workers, self.max_workers, self.response_timeout)

    async def set_default_in(self, admin: ModelAdmin) -> None:
        # Requests always name their version, so TorchServe's default only decides which
        # version it lets us unregister last; it is kept equal to ours.
        await admin.set_default(self.spec.name, self.ts_version)

    async def wait_ready(self, admin: ModelAdmin) -> None:
        """Until TorchServe's workers for this version are READY; then requests may reach it."""
        await admin.wait_ready(self.spec.name, self.ts_version)
        self.model.ready = True

    async def not_loaded(self, answer: str, load_failure: LoadFailure) -> None:
        """Kept, not ready, with the reason its workers could not load (``load_failure``, from
        TorchServe's log, else TorchServe's ``answer``); one line in the log."""
        reason = await load_failure(self.spec.name, self.ts_version)
        self.model.failure = f"its workers could not load: {reason or answer}"
        logger.error("model %s version %s is not served: its workers could not load: %s (its traceback is in "
                     "TorchServe's lines above; the other models are served)", self.spec.name, self.spec.version,
                     reason or answer)
