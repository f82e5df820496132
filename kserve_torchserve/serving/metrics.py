"""One /metrics: KServe's own metrics, TorchServe's, and the request counters KServe documents.

- KServe's: prometheus_client's default registry (latency histograms per model,
  process and GC metrics).
- TorchServe's: its Prometheus endpoint on loopback, fetched per scrape with a short
  timeout (a slow or dead TorchServe never holds a scrape, and never a prediction:
  scrapes and predictions share nothing but the event loop). When it cannot be read,
  the scrape still answers with KServe's metrics and ``torchserve_metrics_up 0``.
- ``Requests2XX/4XX/5XX`` counted here, at our HTTP door, as TorchServe counts them at
  its own: one per HTTP request to a model's predict/explain/infer route, by the status
  it got, including requests refused before TorchServe (bad JSON, unknown model, too
  many rows). TorchServe's own count one per row it serves, so ours replace them.
  TorchServe's per-row ``ts_inference_requests_total``,
  ``ts_inference_latency_microseconds`` and ``ts_queue_latency_microseconds`` pass
  through as TorchServe counts them (predictions reach it over its REST API).
Families are merged by name through prometheus_client (parsed, never re-formatted by
hand), one family per name, so there is one ``# TYPE`` line per name.

Counter names stay as TorchServe writes them. prometheus_client models a counter as a
family ``X`` with samples ``X_total`` and writes ``# TYPE X_total counter``; TorchServe's
counters (``Requests2XX``, ``ts_inference_latency_microseconds``, a handler's custom ones)
have no ``_total``, and its parser appends one to their samples. Such a family is a
``NamedCounter``: its samples keep TorchServe's name, and ``exposition`` writes its
``# TYPE`` line under that name, so every family reads back with its declared type.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections import defaultdict
from typing import Any, Awaitable, Callable, Iterable

import httpx
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import Response


logger = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0
_COUNTER_TYPE = re.compile(r"^# TYPE (\S+) counter$", re.MULTILINE)
HOSTNAME = socket.gethostname()

# Per model version, enough to judge an A/B test from Prometheus alone (management/served.py
# records them): every request a version answered, as the caller's answer ("primary") or as
# a shadow copy, by outcome; its latency; shadow copies sent, dropped (the shadow fell behind)
# and failed; guarded canaries rolled back.
VERSION_REQUESTS = Counter("kserve_torchserve_version_requests", "Requests answered by a model version",
                           ["model_name", "model_version", "traffic", "outcome"])
VERSION_LATENCY = Histogram("kserve_torchserve_version_request_seconds", "Time a model version took to answer",
                            ["model_name", "model_version", "traffic"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
SHADOW_COPIES = Counter("kserve_torchserve_shadow_copies", "Shadow copies of requests, by result",
                        ["model_name", "model_version", "result"])
_KSERVE_HISTOGRAMS: dict[str, tuple[Any, Any, Any]] = {}


def kserve_histograms(model: str) -> tuple[Any, Any, Any]:
    """kserve's per-model preprocess / predict / postprocess histograms, as its Model.__call__ records
    them, for the fast paths that skip Model.__call__ (prometheus' labels() takes a lock and builds a
    key on every call, so the children are kept)."""
    children = _KSERVE_HISTOGRAMS.get(model)
    if children is None:
        from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME

        children = tuple(h.labels(model_name=model) for h in (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME))
        _KSERVE_HISTOGRAMS[model] = children
    return children


ROLLBACKS = Counter("kserve_torchserve_canary_rollbacks", "Guarded canary versions taken out of the split",
                    ["model_name", "model_version"])


class _Families:
    """Families as a collector for generate_latest."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class NamedCounter(Metric):
    """A counter exposed as TorchServe exposes its own: ``# TYPE X counter`` over samples named ``X``."""

    def __init__(self, name: str, documentation: str) -> None:
        super().__init__(name, documentation, "counter")


def _declared_counters(text: str) -> set[str]:
    return set(_COUNTER_TYPE.findall(text))


def torchserve_families(text: str) -> list[Metric]:
    """TorchServe's exposition text as families, its counters under the names it gave them."""
    declared = _declared_counters(text)
    families: list[Metric] = []
    for family in text_string_to_metric_families(text):
        if family.type == "counter" and family.name in declared:  # declared without _total
            named = NamedCounter(family.name, family.documentation)
            named.samples = [s._replace(name=family.name) if s.name == f"{family.name}_total" else s
                             for s in family.samples]
            family = named
        families.append(family)
    return families


def exposition(families: Iterable[Metric]) -> bytes:
    """Prometheus' text format: prometheus_client's, except a NamedCounter's ``# HELP`` and ``# TYPE``
    lines, which name the family as its samples do."""
    out = []
    for family in families:
        text = generate_latest(_Families([family]))
        if isinstance(family, NamedCounter):
            # generate_latest wrote "# HELP X_total ..." and "# TYPE X_total counter": the first
            # "_total " of each is the end of the name (names hold no spaces).
            help_line, type_line, rest = text.split(b"\n", 2)
            text = b"\n".join([help_line.replace(b"_total ", b" ", 1), type_line.replace(b"_total ", b" ", 1), rest])
        out.append(text)
    return b"".join(out)


class RequestCounters:
    """Counts requests by the status class of their answer."""

    def __init__(self) -> None:
        self.by_class: dict[str, float] = defaultdict(float)

    def record(self, status: int) -> None:
        self.by_class[f"{status // 100}XX"] += 1

    def families(self) -> list[Metric]:
        families: list[Metric] = []
        for cls in ("2XX", "4XX", "5XX"):
            family = NamedCounter(f"Requests{cls}", f"Requests answered with a {cls} status")
            family.samples.append(Sample(f"Requests{cls}", {"Level": "Host", "Hostname": HOSTNAME},
                                         self.by_class[cls]))
            families.append(family)
        return families


COUNTERS = RequestCounters()


def merge(kserve: list[Metric], ours: list[Metric], torchserve: list[Metric]) -> list[Metric]:
    """One family per name, in order of precedence: KServe's, ours, TorchServe's.

    TorchServe's own Requests2XX etc. count rows and the runtime's own calls (key
    renewals); ours, one per client request, replace them.
    """
    merged: dict[str, Metric] = {}
    for family in [*kserve, *ours, *torchserve]:
        merged.setdefault(family.name, family)
    return list(merged.values())


class MetricsScraper:
    def __init__(self, torchserve_url: str, counters: RequestCounters = COUNTERS,
                 timeout_s: float = SCRAPE_TIMEOUT_S) -> None:
        self._url = torchserve_url.rstrip("/") + "/metrics"
        self._counters = counters
        # No kept-alive connections: scrapes are seconds apart, and a connection kept
        # across a TorchServe restart would fail the first scrape after it.
        self._client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_keepalive_connections=0))

    async def torchserve_families(self) -> tuple[list[Metric], bool]:
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            return torchserve_families(response.text), True
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("TorchServe metrics unavailable (%s): serving KServe's only", exc)
            return [], False

    async def render(self) -> bytes:
        started = time.perf_counter()
        torchserve, up = await self.torchserve_families()
        status = Metric("torchserve_metrics_up", "1 when TorchServe's metrics could be read for this scrape",
                        "gauge")
        status.samples.append(Sample("torchserve_metrics_up", {}, 1.0 if up else 0.0))
        took = Metric("torchserve_metrics_scrape_seconds", "Time to read TorchServe's metrics", "gauge")
        took.samples.append(Sample("torchserve_metrics_scrape_seconds", {}, time.perf_counter() - started))
        return exposition(merge(list(REGISTRY.collect()), [*self._counters.families(), status, took], torchserve))

    async def handle(self, request: Request) -> Response:
        return Response(await self.render(), media_type=CONTENT_TYPE_LATEST)

    async def close(self) -> None:
        await self._client.aclose()


# A model's inference routes on kserve's REST API (v1 predict/explain, v2 infer).
_INFERENCE_PATH = re.compile(r"/v1/models/[^/]+:(predict|explain)|/v2/models/[^/]+(/versions/[^/]+)?/infer")


class CountRequests:
    """ASGI layer in front of the whole HTTP app: counts each inference request by the
    status it was answered with, whichever path (fast path, kserve's endpoints, an
    exception handler) produced the answer. An app that raises counts as a 500."""

    def __init__(self, app: Callable[..., Awaitable[None]], counters: RequestCounters = COUNTERS) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _INFERENCE_PATH.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def observe(message: Any) -> None:
            nonlocal status
            await send(message)  # first: an answer the server refuses to send (a bad header) counts as a 500
            if message["type"] == "http.response.start":
                status = message["status"]

        try:
            await self.app(scope, receive, observe)
        except BaseException:
            status = status or 500
            raise
        finally:
            if status is not None:  # None: the client left before any answer
                self.counters.record(status)
