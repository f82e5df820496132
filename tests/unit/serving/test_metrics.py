from __future__ import annotations


from prometheus_client.parser import text_string_to_metric_families

import httpx
import pytest

from kserve_torchserve.serving.metrics import (CountRequests, MetricsScraper, RequestCounters, exposition, merge,
                                               torchserve_families)
from kserve_torchserve.backend.ports import free_ports
from tests.helpers import undeclared


def _families(text: str) -> list:  # type: ignore[type-arg]
    return list(text_string_to_metric_families(text))


def test_merge_keeps_one_family_per_name_in_precedence_order() -> None:
    kserve = _families("# TYPE up gauge\nup 1\n")
    ours = _families("# TYPE Requests2XX counter\nRequests2XX 7\n")
    torchserve = _families("# TYPE up gauge\nup 0\n# TYPE Requests2XX counter\nRequests2XX 99\n"
                           "# TYPE PredictionTime gauge\nPredictionTime{ModelName=\"m\"} 1.5\n")
    merged = {f.name: [s.value for s in f.samples] for f in merge(kserve, ours, torchserve)}
    assert merged == {"up": [1.0], "Requests2XX": [7.0], "PredictionTime": [1.5]}


def test_request_counters_by_status_class() -> None:
    counters = RequestCounters()
    for status in (200, 200, 400, 413, 503):
        counters.record(status)
    values = {s.name: s.value for f in counters.families() for s in f.samples}
    assert values == {"Requests2XX": 2, "Requests4XX": 2, "Requests5XX": 1}


async def _answer_by_path(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    """An app answering for model "<status>" with that status, and raising for model "boom"."""
    last = scope["path"].split("/models/", 1)[-1].split("/")[0].split(":")[0]
    if last == "boom":
        raise RuntimeError("handler bug")
    await send({"type": "http.response.start", "status": int(last) if last.isdigit() else 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]


async def test_requests_are_counted_at_the_http_door_by_status() -> None:
    counters = RequestCounters()
    app = CountRequests(_answer_by_path, counters)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://t") as client:
        for path in ("/v1/models/m:predict", "/v1/models/m:explain", "/v2/models/m/infer",
                     "/v2/models/m/versions/2/infer"):
            await client.post(path)
        await client.post("/v1/models/404:predict")  # e.g. an unknown model
        await client.post("/v2/models/400/infer")  # e.g. a body that is not JSON
        await client.post("/v2/models/boom/infer")  # the app raised: the client got a 500
        await client.get("/v1/models/m")  # not an inference route
        await client.post("/v2/repository/models/m/load")
    values = {s.name: s.value for f in counters.families() for s in f.samples}
    assert values == {"Requests2XX": 4, "Requests4XX": 2, "Requests5XX": 1}


async def test_scrape_answers_when_torchserve_is_down() -> None:
    (port,) = free_ports(1)  # nothing listens there
    scraper = MetricsScraper(f"http://127.0.0.1:{port}", timeout_s=0.5)
    try:
        text = (await scraper.render()).decode()
    finally:
        await scraper.close()
    names = {f.name for f in _families(text)}
    assert "torchserve_metrics_up" in names and "python_gc_objects_collected" in names
    assert "torchserve_metrics_up 0.0" in text


# As TorchServe 0.12 writes them (its Prometheus endpoint, trailing commas included).
TORCHSERVE_TEXT = """\
# HELP ts_queue_latency_microseconds Cumulative queue duration in microseconds
# TYPE ts_queue_latency_microseconds counter
ts_queue_latency_microseconds{model_name="digits",model_version="1.0",hostname="vm",} 195.935
# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="digits",model_version="1.0",hostname="vm",} 1.0
# HELP Requests2XX Torchserve prometheus counter metric with unit: Count
# TYPE Requests2XX counter
Requests2XX{Level="Host",Hostname="vm",} 5.0
# TYPE CustomCounter counter
# HELP HandlerTime Torchserve prometheus gauge metric with unit: ms
# TYPE HandlerTime gauge
HandlerTime{ModelName="digits",Level="Model",Hostname="vm",} 154.08
"""


def test_torchserve_counters_keep_their_names_and_types() -> None:
    families = torchserve_families(TORCHSERVE_TEXT)
    text = exposition(families).decode()
    assert undeclared(text) == [], text
    for line in ("# TYPE ts_queue_latency_microseconds counter", "# TYPE ts_inference_requests_total counter",
                 "# TYPE Requests2XX counter", "# TYPE CustomCounter counter", "# TYPE HandlerTime gauge",
                 'Requests2XX{Hostname="vm",Level="Host"} 5.0',
                 'ts_queue_latency_microseconds{hostname="vm",model_name="digits",model_version="1.0"} 195.935'):
        assert line in text.splitlines(), line
    reread = {f.name: f.type for f in _families(text)}
    assert reread == {"ts_queue_latency_microseconds": "counter", "ts_inference_requests": "counter",
                      "Requests2XX": "counter", "CustomCounter": "counter", "HandlerTime": "gauge"}


def test_our_request_counters_are_declared_under_their_own_names() -> None:
    counters = RequestCounters()
    counters.record(200)
    text = exposition(counters.families()).decode()
    assert "# TYPE Requests2XX counter" in text and "Requests2XX_total" not in text
    assert undeclared(text) == []
    assert [(f.name, f.type, len(f.samples)) for f in _families(text)] == [
        ("Requests2XX", "counter", 1), ("Requests4XX", "counter", 1), ("Requests5XX", "counter", 1)]


async def test_a_whole_scrape_reads_back_with_every_family_typed() -> None:
    """KServe's registry (prometheus_client's own counters, histograms, gauges) and ours together."""
    (port,) = free_ports(1)
    scraper = MetricsScraper(f"http://127.0.0.1:{port}", timeout_s=0.5)
    try:
        text = (await scraper.render()).decode()
    finally:
        await scraper.close()
    assert undeclared(text) == []
    assert [f.name for f in _families(text) if f.type in ("unknown", "untyped")] == []


async def test_an_answer_the_server_refuses_to_send_counts_as_a_500() -> None:
    counters = RequestCounters()

    async def refusing(message: dict) -> None:  # type: ignore[type-arg]
        if message["type"] == "http.response.start":
            raise RuntimeError("Invalid HTTP header value.")  # what uvicorn's send raises for one

    with pytest.raises(RuntimeError):
        await CountRequests(_answer_by_path, counters)({"type": "http", "method": "POST",
                                                        "path": "/v1/models/m:predict"}, None, refusing)
    assert dict(counters.by_class) == {"5XX": 1}
