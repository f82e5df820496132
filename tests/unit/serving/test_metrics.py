from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

import httpx
import pytest

from kserve_torchserve.serving.metrics import CountRequests, MetricsScraper, RequestCounters, merge
from kserve_torchserve.backend.ports import free_ports


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
