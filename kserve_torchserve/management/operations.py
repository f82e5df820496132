"""The one place that changes what is served; every door calls it.

The ``/models`` routes, the v2 repository extension (REST and gRPC) and the supervisor
(after it restarts TorchServe) all go through ``Operations``. A change is, in order:
checks (done by the caller: key, allow-list, names) -> fetch in a child process ->
the start-up model-store builder (``model_store.stage``) -> register in TorchServe
through its management REST API (so its status codes and messages are the answer)
-> wait until its workers are READY -> ``registry.add``: served on every route at once.
Removal runs the other way: out of the registry (new requests: 404), drain what is in
flight (bounded by the grace period), then out of TorchServe and off the disk.

Mutations are serialised by one lock. TorchServe itself starts empty: every model,
start-up ones included, is registered here, so a restarted TorchServe gets back
exactly what was served (versions, workers, batching, default) from ``restore()``.
A version whose workers cannot load there (TorchServe answers "Failed to start workers"
and scales it to no worker: no retries) is kept, not ready, with the reason from TorchServe's log
(``failure``), and the others are served; the next TorchServe restart tries it again.
Only when no version at all can load does ``restore()`` fail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..backend.model_admin import ModelAdmin
from ..config.model_config import ModelSpec
from ..errors import ManagementError, StartupError
from ..model_store.stage import Staged, discard, stage
from ..serving.model import TorchServeModel
from .registration import Limits, LoadFailure, Registration, no_load_failure
from .registry import ModelRegistry, version_key
from .traffic import Split, startup_splits

logger = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any]]


class Operations:
    def __init__(
        self,
        registry: ModelRegistry,
        admin: ModelAdmin,
        store_root: Path,
        limits: Limits,
        entry_for: Callable[[ModelSpec], dict[str, Any]],
        make_model: Callable[[ModelSpec, float, str], TorchServeModel],
        backend_up: Callable[[], bool],
        load_failure: LoadFailure = no_load_failure,
    ) -> None:
        self.registry = registry
        self.admin = admin
        self.store_root = store_root
        self.limits = limits
        self._entry_for = entry_for  # spec -> its TorchServe settings (config/properties.model_entry)
        self._make_model = make_model  # (spec, response timeout, TorchServe version) -> a served version
        self._backend_up = backend_up
        self._load_failure = load_failure  # (name, TorchServe version) -> why its workers could not load
        self.registrations: dict[tuple[str, str], Registration] = {}
        self.lock = asyncio.Lock()

    # -- what the doors read ----------------------------------------------------------------

    def find(self, name: str, version: str | None = None) -> Registration:
        """The registration of a version (the default when None); ManagementError(404) as TorchServe words it."""
        served = self.registry.models.get(name)
        if served is None:
            raise ManagementError(404, f"Model not found: {name}")
        registration = self.registrations.get((name, version or served.default))
        if registration is None:
            raise ManagementError(404, f"Model version: {version} does not exist for model: {name}",
                                  "ModelVersionNotFoundException")
        return registration

    # -- start-up and restarts --------------------------------------------------------------

    def add_startup(self, specs: Sequence[ModelSpec], splits: Mapping[str, Any]) -> list[Registration]:
        """The models of the start-up store (already in the model store): TorchServe gets them at restore().

        Of several versions of one name, the default is the one KServe's model_snapshot
        marks, else the highest.
        """
        added = []
        for spec in specs:
            registration = self.registration(spec, spec.version, spec.mar_name)
            self.registrations[(spec.name, spec.version)] = registration
            self.registry.add(registration.model)
            added.append(registration)
        for name in {spec.name for spec in specs}:
            versions = [s for s in specs if s.name == name]
            marked = [s.version for s in versions if s.default]
            self.registry.set_default(name, marked[0] if marked else max((s.version for s in versions), key=version_key))
        self._startup_splits(specs, splits)
        return added

    def _startup_splits(self, specs: Sequence[ModelSpec], splits: Mapping[str, Any]) -> None:
        """TS_TRAFFIC_SPLIT, else a ``traffic`` key in a model's config: StartupError naming the problem."""
        parsed, problems = startup_splits(specs, splits)
        if problems:
            raise StartupError(problems[0])
        for name, split in parsed.items():
            self.registry.models[name].set_split(split)

    async def restore(self) -> None:
        """Register every model in a freshly started TorchServe, as it was served; ready when all that load are.

        All names at once: TorchServe starts their workers in parallel, so a restart takes about
        as long as the slowest model, not as all of them."""
        async with self.lock:
            registrations = list(self.registrations.values())
            for registration in registrations:
                registration.model.ready = False
                registration.model.failure = None
            outcomes: dict[int, BaseException | None] = {}

            async def register_versions(versions: list[Registration]) -> None:
                for r in versions:  # one name's versions one after the other: TorchServe adds them to one entry
                    try:
                        await r.register_in(self.admin)
                        outcomes[id(r)] = None
                    except Exception as exc:
                        outcomes[id(r)] = exc

            names: dict[str, list[Registration]] = {}
            for registration in registrations:
                names.setdefault(registration.spec.name, []).append(registration)
            await asyncio.gather(*(register_versions(versions) for versions in names.values()))
            loaded = []
            for registration, result in ((r, outcomes[id(r)]) for r in registrations):
                if isinstance(result, ManagementError) and result.status in (500, 507):  # its workers failed
                    await registration.not_loaded(result.message, self._load_failure)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    loaded.append(registration)
            if registrations and not loaded:
                raise ManagementError(500, "no model could be loaded: " + "; ".join(
                    f"{r.spec.name} {r.spec.version}: {r.model.failure}" for r in registrations))
            for name, served in self.registry.models.items():
                default = self.registrations[(name, served.default)]
                if default.model.failure is None:
                    await default.set_default_in(self.admin)
            await asyncio.gather(*(r.wait_ready(self.admin) for r in loaded))

    # -- changes ----------------------------------------------------------------------------

    def _check_room(self) -> None:
        if not self._backend_up():
            raise ManagementError(503, "TorchServe is restarting or not answering: retry in a few seconds")
        if len(self.registrations) >= self.limits.max_models:
            raise ManagementError(409, f"the server already serves {len(self.registrations)} model versions, "
                                       "its limit (TS_MAX_MODELS)")

    async def add(self, source: Path, work: Path, url: str, name: str | None, version: str | None,
                  overrides: dict[str, int | None]) -> Registration:
        """Stage ``source`` (a fetched artifact), register it in TorchServe, serve it. Caller holds the lock.

        ``overrides``: ModelSpec fields the caller set (batch_size, ...), beating the artifact's own.
        """
        self._check_room()
        try:
            staged = await asyncio.to_thread(stage, source, work, self.store_root, name, version)
        except StartupError as exc:
            raise ManagementError(400, str(exc)) from None
        spec = replace(staged.spec, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
        if (spec.name, spec.version) in self.registrations:
            discard(staged)
            raise ManagementError(409, f"Model version {spec.version} is already registered for model {spec.name}")
        registration = self.registration(spec, staged.ts_version, url, staged)
        await self.activate(registration)
        self.registrations[(spec.name, spec.version)] = registration
        self.registry.add(registration.model)
        logger.info("serving model %s version %s from %s", spec.name, spec.version, url)
        return registration

    def registration(self, spec: ModelSpec, ts_version: str, url: str, staged: Staged | None = None,
                     generation: int = 0) -> Registration:
        """A registration with every setting resolved: the spec's own, else the TS_* defaults."""
        entry = self._entry_for(spec)
        model = self._make_model(spec, float(entry["responseTimeout"]), ts_version)
        return Registration(spec, ts_version, url, int(entry["minWorkers"]), int(entry["maxWorkers"]),
                            int(entry["batchSize"]), int(entry["maxBatchDelay"]), int(entry["responseTimeout"]),
                            model, staged, generation)

    async def activate(self, r: Registration, make_default: bool = False) -> None:
        """Into TorchServe and READY, or nothing half-registered: out of TorchServe again, files gone."""
        try:
            try:
                await r.register_in(self.admin)
            except ManagementError as exc:
                reason = await self._load_failure(r.spec.name, r.ts_version) if exc.status in (500, 507) else None
                if reason is not None:  # TorchServe's answer names no cause; its log does
                    raise ManagementError(exc.status, f"{exc.message}: {reason}", exc.type) from None
                raise
            await r.wait_ready(self.admin)
            if make_default or r.spec.name not in self.registry.models:
                await r.set_default_in(self.admin)
        except BaseException:
            try:
                await self.admin.unregister(r.spec.name, r.ts_version)
            except ManagementError as exc:
                logger.warning("could not unregister the failed model %s: %s", r.spec.name, exc.message)
            if r.staged is not None:
                discard(r.staged)
            raise

    async def unregister(self, name: str, version: str | None) -> Answer:
        async with self.lock:
            r = self.find(name, version)
            served = self.registry.models[name]
            if r.spec.version == served.default and len(served.versions) > 1:
                raise ManagementError(403, f"Cannot remove default version for model {name}",
                                      "InvalidModelVersionException")
            split = served.split
            if split is not None and len(served.versions) > 1 and (
                    r.spec.version in split.weights or r.spec.version in split.shadow):
                raise ManagementError(409, f"version {r.spec.version} of model {name} is in its traffic split: "
                                           f"change the split first (PUT /models/{name}/traffic)")
            await self.remove(r)
        return 200, {"status": f'Model "{name}" unregistered'}

    async def scale(self, name: str, version: str | None, min_workers: int, max_workers: int,
                    synchronous: bool) -> Answer:
        if max_workers < min_workers:
            raise ManagementError(400, "max_worker cannot be less than min_worker.")
        async with self.lock:
            r = self.find(name, version)
            status, body = await self.admin.scale(name, r.ts_version, min_workers, max_workers, synchronous)
            r.min_workers, r.max_workers = min_workers, max_workers  # a restarted TorchServe gets these
            r.model.set_workers(min_workers)
        if status == 200:  # TorchServe's words, with our version rather than its own
            body = {"status": f"Workers scaled to {min_workers} for model: {name}"
                              + (f", version: {version}" if version else "")}
        return status, body

    async def register(self, source: Path, work: Path, url: str, name: str | None, version: str | None,
                       overrides: dict[str, int | None]) -> Answer:
        async with self.lock:
            r = await self.add(source, work, url, name, version, overrides)
        return 200, {"status": f'Model "{r.spec.name}" Version: {r.spec.version} registered with '
                               f"{r.min_workers} initial workers"}

    async def set_default(self, name: str, version: str) -> Answer:
        async with self.lock:
            r = self.find(name, version)
            await r.set_default_in(self.admin)
            self.registry.set_default(name, version)
        return 200, {"status": f'Default version successfully updated for model "{name}" to "{version}"'}

    async def remove(self, r: Registration) -> None:
        """Stop serving one version: out of the registry, drained, out of TorchServe, off the disk."""
        name, version = r.spec.name, r.spec.version
        if self.registry.find(name, version) is r.model:
            self.registry.remove(name, version)
        del self.registrations[(name, version)]
        await self.retire(r)
        logger.info("stopped serving model %s version %s", name, version)

    async def retire(self, r: Registration) -> None:
        """A registration no request can reach any more: drain it, then out of TorchServe and off the disk."""
        if not await r.model.drained(self.limits.grace_s):
            logger.warning("model %s version %s still had %d requests in flight after %.0fs; unregistering",
                           r.spec.name, r.spec.version, r.model.in_flight, self.limits.grace_s)
        r.model.ready = False
        await self.admin.unregister(r.spec.name, r.ts_version)
        if r.staged is not None:
            await asyncio.to_thread(discard, r.staged)

    async def set_traffic(self, name: str, body: Any) -> Answer:
        """A new split for ``name``, checked whole, applied at once (and clearing a rollback)."""
        async with self.lock:
            self.find(name)
            served = self.registry.models[name]
            split = Split.parse(body, set(served.versions))
            served.set_split(split)
        logger.info("model %s: traffic %s", name, split.body())
        return 200, {"status": f"Traffic split updated for model \"{name}\"", **split.body()}

    def traffic(self, name: str) -> Answer:
        """The split in force and each version's live counts."""
        self.find(name)
        served = self.registry.models[name]
        body: dict[str, Any] = served.split.body() if served.split is not None else {"weights": None}
        body["default"] = served.default
        body["versions"] = {v: {"ready": m.ready, "in_flight": m.in_flight, **served.stats.get(v, {})}
                            for v, m in sorted(served.versions.items())}
        return 200, body
