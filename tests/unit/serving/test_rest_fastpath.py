"""The fast path answers exactly as kserve's FastAPI endpoints do, for good and bad requests.

Both sides run in-process on the same kserve app and DataPlane; TorchServe is replaced
by a small fake client here (the integration tests call the real one through the fast
path): this test is about the HTTP layer only.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from kserve_torchserve.errors import UpstreamError
from kserve_torchserve.serving.rest_fastpath import FastPath, plain_json, route
from kserve_torchserve.serving.rest import LeanRESTServer, TorchServeDataPlane, upstream_error_handler
from tests.unit.fake_torchserve import two_models


def _app() -> tuple[FastAPI, TorchServeDataPlane]:
    registry = two_models()
    dataplane = TorchServeDataPlane(model_registry=registry)
    app = FastAPI(default_response_class=ORJSONResponse)
    rest = LeanRESTServer("unused:app", dataplane, ModelRepositoryExtension(model_registry=registry), 0)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    app.add_exception_handler(UpstreamError, upstream_error_handler)  # type: ignore[arg-type]
    return app, dataplane


CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("/v1/models/m:predict", {"instances": [[1, 2], [3, 4.5]]}, {}),
    ("/v1/models/m:predict", {"instances": [[1, 2]]}, {"content-type": "application/json; charset=utf-8"}),
    ("/v1/models/m:predict", {"inputs": [[1]]}, {}),
    ("/v1/models/m:predict", b'{"instances": [[1, 2]', {}),  # malformed JSON
    ("/v1/models/m:predict", {"wrong": 1}, {}),
    ("/v1/models/m:predict", {"instances": list(range(6))}, {}),  # more rows than the queue: 413
    ("/v1/models/m:predict", {"instances": ["boom"]}, {}),  # the model fails: 500
    ("/v1/models/nope:predict", {"instances": [[1]]}, {}),  # unknown model: 404
    ("/v1/models/starting:predict", {"instances": [[1]]}, {}),  # not ready: 503
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                        "data": [1, 2, 3, 4]}]}, {}),
    ("/v2/models/m/infer", {"id": "abc", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64",
                                                     "data": [1, 2]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}, {}),  # schema: kserve's
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": []}, {}),
    ("/v2/models/nope/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
     {"content-type": "text/plain"}),
]


@pytest.mark.parametrize("path,body,headers", CASES)
async def test_fast_path_answers_like_kserve(path: str, body: Any, headers: dict[str, str]) -> None:
    app, dataplane = _app()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if path.startswith("/v2"):
        headers = {"content-type": "application/json", **headers}
    answers = []
    for asgi in (app, FastPath(app, dataplane)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t") as client:
            answers.append(await client.post(path, content=raw, headers=headers))
    slow, fast = answers
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    if path.startswith("/v2") and slow.status_code == 200:
        # Only the generated response id (a uuid when the request has none) may differ.
        slow_body, fast_body = slow.json(), fast.json()
        if "id" not in body:
            slow_body.pop("id"), fast_body.pop("id")
        assert fast_body == slow_body
    else:
        assert fast.json() == slow.json()
    assert fast.headers["content-type"] == slow.headers["content-type"]


async def test_fast_path_really_serves_the_hot_routes() -> None:
    """A request the fast path takes never reaches FastAPI's routing."""
    app, dataplane = _app()
    reached: list[str] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await app(scope, receive, send)

    spy.exception_handlers = app.exception_handlers  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=FastPath(spy, dataplane)),
                                 base_url="http://t") as client:
        assert (await client.post("/v1/models/m:predict", json={"instances": [[1, 2]]})).json() == {
            "predictions": [3]}
        assert (await client.post("/v1/models/m:predict", json={"instances": ["boom"]})).status_code == 500
        assert (await client.get("/v1/models/m")).status_code == 200
    assert reached == ["/v1/models/m"]


def test_routes_and_headers_it_takes() -> None:
    assert route("/v1/models/m:predict") == ("v1", "m")
    assert route("/v2/models/m/infer") == ("v2", "m")
    assert route("/v2/models/m/versions/2/infer") is None
    assert route("/v1/models/m:explain") is None
    assert route("/v1/models/:predict") is None
    assert plain_json([(b"content-type", b"application/json")])
    assert plain_json([])
    assert not plain_json([], required=True)  # v2: FastAPI parses only declared JSON
    assert not plain_json([(b"content-type", b"application/cloudevents+json")])
    assert not plain_json([(b"ce-id", b"1")])
    assert not plain_json([(b"inference-header-content-length", b"10")])


@pytest.mark.parametrize("fast", [True, False])
async def test_a_versioned_route_is_the_model_route_with_the_version_header(fast: bool) -> None:
    """kserve answers "not supported" on /versions/{v}/infer; ours serves it as the plain route
    with x-model-version (the model picks the version), with the fast path on or off."""
    app, dataplane = _app()
    body = json.dumps({"id": "v", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}).encode()
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        plain = await client.post("/v2/models/m/infer", content=body, headers={**headers, "x-model-version": "1.0"})
    ours = FastPath(app, dataplane, fast=fast)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ours), base_url="http://t") as client:
        versioned = await client.post("/v2/models/m/versions/1.0/infer", content=body, headers=headers)
    assert versioned.status_code == plain.status_code == 200
    assert versioned.json() == plain.json()
