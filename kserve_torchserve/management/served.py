"""ServedModel: all versions of one name, as kserve sees one model; it picks the version of each request.

Per request: ``traffic.choose`` picks the version (explicit > sticky > weights > default);
that version's ``TorchServeModel`` answers and the ``x-model-version`` response header (REST)
or the v2 ``model_version`` field says which; the answer is counted by version and outcome
(and times a latency histogram); a guarded canary's 5xx share is watched
(``GuardWindow``) and the canary rolled back when it exceeds the limit; shadow versions get
a copy, fire and forget: at most ``SHADOW_IN_FLIGHT`` copies per shadow version are in
flight, further ones are dropped and counted, and no copy ever delays or fails the answer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random as _random
import time
from typing import Any, Callable, Dict, Optional, Union

import kserve
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferRequest, InferResponse

from ..errors import UpstreamError, shown
from ..serving.metrics import ROLLBACKS, SHADOW_COPIES, VERSION_LATENCY, VERSION_REQUESTS
from ..serving.model import VERSION_HEADER, TorchServeModel
from . import traffic
from .traffic import RolledBack, Split

logger = logging.getLogger(__name__)

SHADOW_IN_FLIGHT = 4


def outcome(exc: BaseException | None) -> str:
    """2xx / 4xx / 5xx for an answer, or for the exception that answered instead."""
    if exc is None:
        return "2xx"
    if isinstance(exc, UpstreamError):
        return f"{exc.http_status // 100}xx"
    return "4xx" if isinstance(exc, (InvalidInput, ModelNotFound)) else "5xx"


class GuardWindow:
    """The guarded version's answers over the last ``window_s``: (time, failed)."""

    def __init__(self, guard: traffic.Guard, clock: Callable[[], float] = time.monotonic) -> None:
        self.guard = guard
        self._clock = clock
        self._events: collections.deque[tuple[float, bool]] = collections.deque()
        self._failed = 0

    def record(self, failed: bool) -> float | None:
        """Add one answer; the error rate when it is over the limit (roll back), else None."""
        now = self._clock()
        self._events.append((now, failed))
        self._failed += failed
        while self._events and self._events[0][0] < now - self.guard.window_s:
            self._failed -= self._events.popleft()[1]
        rate = self._failed / len(self._events)
        if len(self._events) >= self.guard.min_requests and rate > self.guard.max_error_rate:
            return rate
        return None


class ServedModel(kserve.Model):  # type: ignore[misc]
    direct_predict = True  # predict() picks the version and answers: the fast paths may call it directly

    def __init__(self, name: str, random: traffic.Random = _random.random) -> None:
        # return_response_headers: kserve's Model.__call__ then hands predict a dict for
        # the response headers, where the answering version is written.
        super().__init__(name, return_response_headers=True)
        self.versions: dict[str, TorchServeModel] = {}
        self.default = ""
        self.split: Split | None = None
        self.stats: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._random = random
        self._guard: GuardWindow | None = None
        self._shadow_in_flight: collections.Counter[str] = collections.Counter()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    @property
    def ready(self) -> bool:  # kserve reads model.ready for /v2/models/{m}/ready and ModelReady
        model = self.versions.get(self.default)
        return bool(model is not None and model.ready)

    @ready.setter
    def ready(self, value: bool) -> None:
        pass  # kserve.Model's constructor sets it; readiness is the default version's

    def load(self) -> bool:
        return self.ready

    def stop(self) -> None:
        pass  # kserve calls it on unload; versions are stopped by the operations that remove them

    def set_split(self, split: Split | None) -> None:
        """A new split, whole (one assignment); it clears a rollback and restarts the guard's window."""
        self.split = split
        self._guard = GuardWindow(split.guard) if split is not None and split.guard is not None else None

    def choose(self, headers: Optional[Dict[str, str]], payload: Any = None) -> TorchServeModel:
        """The version that answers this request; 404 naming the versions there are."""
        explicit = (headers or {}).get(VERSION_HEADER) or (
            payload.model_version if isinstance(payload, InferRequest) else None)
        wanted = traffic.choose(self.split, self.default, headers, explicit, self._random)
        model = self.versions.get(wanted)
        if model is None:
            raise UpstreamError(404, f"model {self.name} has no version {shown(wanted)}: versions are "
                                     f"{', '.join(sorted(self.versions))}")
        return model

    async def predict(
        self,
        payload: Union[Dict[str, Any], InferRequest],
        headers: Optional[Dict[str, str]] = None,
        response_headers: Optional[Dict[str, str]] = None,
    ) -> Union[Dict[str, Any], InferResponse]:
        model = self.choose(headers, payload)
        if response_headers is not None:
            response_headers[VERSION_HEADER] = model.version
        self._copy_to_shadows(model.version, payload)
        return await self._answer(model, model.predict(payload, headers))  # type: ignore[no-any-return]

    async def predict_v1_bytes(self, body: bytes, headers: Dict[str, str], response_headers: Dict[str, str]) -> bytes:
        """predict() for a v1 body nobody parsed (the REST fast path): the version by headers alone."""
        model = self.choose(headers)
        response_headers[VERSION_HEADER] = model.version
        self._copy_to_shadows(model.version, body)
        answer: bytes = await self._answer(model, model.predict_v1_bytes(body))
        return answer

    async def explain(
        self, payload: Union[Dict[str, Any], InferRequest], headers: Optional[Dict[str, str]] = None
    ) -> Dict[str, Any]:
        model = self.choose(headers, payload)
        if headers is not None:
            headers[VERSION_HEADER] = model.version  # postprocess copies it into the response headers
        return await self._answer(model, model.explain(payload, headers))  # type: ignore[no-any-return]

    def postprocess(
        self, result: Any, headers: Optional[Dict[str, str]] = None, response_headers: Optional[Dict[str, str]] = None
    ) -> Any:
        if response_headers is not None and headers and VERSION_HEADER not in response_headers:
            version = headers.get(VERSION_HEADER)
            if version:
                response_headers[VERSION_HEADER] = version
        return result

    async def _answer(self, model: TorchServeModel, answering: Any, role: str = "primary") -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await answering
        except BaseException as exc:
            error = exc
            raise
        finally:
            result = outcome(error)
            counter, latency = self._metrics(model.version, role, result)
            counter.inc()
            latency.observe(time.perf_counter() - started)
            if role == "primary":
                self.stats[model.version][result] += 1
                self._watch(model.version, result == "5xx")

    def _metrics(self, version: str, role: str, result: str) -> tuple[Any, Any]:
        """The metric children of one (version, role, outcome): prometheus' labels() locks and builds a key."""
        key = (version, role, result)
        children = self._children.get(key)
        if children is None:
            children = (VERSION_REQUESTS.labels(self.name, version, role, result),
                        VERSION_LATENCY.labels(self.name, version, role))
            self._children[key] = children
        return children

    def _watch(self, version: str, failed: bool) -> None:
        guard, split = self._guard, self.split
        if guard is None or split is None or split.rolled_back is not None or version != guard.guard.version:
            return
        rate = guard.record(failed)
        if rate is None:
            return
        self.split = traffic.with_rollback(split, RolledBack(version, round(rate, 4), time.time()))
        ROLLBACKS.labels(self.name, version).inc()
        logger.warning("model %s: canary version %s rolled back: %.1f%% of its answers failed (5xx) over the last "
                       "%.0fs, over the guard's %.1f%%; its traffic goes to the other versions until the next "
                       "PUT /models/%s/traffic", self.name, version, 100 * rate, guard.guard.window_s,
                       100 * guard.guard.max_error_rate, self.name)

    def _copy_to_shadows(self, answering: str, payload: Any) -> None:
        for version in traffic.shadows(self.split, answering, self._random):
            shadow = self.versions.get(version)
            if shadow is None or not shadow.ready or self._shadow_in_flight[version] >= SHADOW_IN_FLIGHT:
                SHADOW_COPIES.labels(self.name, version, "dropped").inc()
                self.stats[version]["shadow dropped"] += 1
                continue
            self._shadow_in_flight[version] += 1
            SHADOW_COPIES.labels(self.name, version, "sent").inc()
            self.stats[version]["shadow sent"] += 1
            task = asyncio.ensure_future(self._shadow(shadow, payload))
            self._shadow_tasks.add(task)  # a reference, or the task may be collected mid-way
            task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, model: TorchServeModel, payload: Any) -> None:
        try:
            copy = model.predict_v1_bytes(payload) if isinstance(payload, bytes) else model.predict(payload)
            await self._answer(model, copy, role="shadow")
        except Exception as exc:  # its answer is discarded; its failure is counted, never raised
            SHADOW_COPIES.labels(self.name, model.version, "failed").inc()
            self.stats[model.version]["shadow failed"] += 1
            logger.debug("shadow copy to %s version %s failed: %s", self.name, model.version, exc)
        finally:
            self._shadow_in_flight[model.version] -= 1
