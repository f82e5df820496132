"""The fast path answers exactly as kserve's FastAPI endpoints do, for good and bad requests.

Both sides run in-process on the same kserve app and DataPlane; TorchServe is replaced
by a small fake client here (the integration tests call the real one through the fast
path): this test is about the HTTP layer only. The checks every request passes first
(size, content type, empty body) are the same with the fast path off (--disable_fast_path),
which is what the "slow" side is: FastPath(fast=False) in front of kserve's endpoints.
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
from kserve_torchserve.serving.rest_fastpath import FastPath
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
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}, {}),  # schema: 400
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": []}, {}),
    ("/v2/models/nope/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
     {"content-type": "text/plain"}),  # 415
    ("/v1/models/m:predict", {"instances": [[1, 2]]}, {"content-type": "text/plain"}),  # 415, never parsed
    ("/v1/models/m:predict", {"instances": [[1, 2]]}, {"content-type": "application/x-www-form-urlencoded"}),  # curl -d
    ("/v1/models/m:predict", b"", {}),  # empty: 400
    ("/v2/models/m/infer", b"", {}),
    ("/v2/models/m/infer", {"instances": [[1]]}, {}),  # a v1 body on v2: 400 saying so
    ("/v2/models/m/infer", b'{"inputs": [', {}),  # malformed
    ("/v2/models/m/infer", b"[" * 100_000 + b"]" * 100_000, {}),  # deeper than any parser goes
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": [1, 2]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT99", "data": [1]}]}, {}),
    # v2_json's common form, and what it leaves to kserve's models: the answers must not tell them apart
    ("/v2/models/m/infer", {"id": "n", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "fp64",
                                                   "data": [[1, 2], [3, 4]]}]}, {}),
    ("/v2/models/m/infer", {"id": "b", "inputs": [{"name": "x", "shape": [2], "datatype": "BOOL",
                                                   "data": [True, False]}]}, {}),
    ("/v2/models/m/infer", {"id": "s", "inputs": [{"name": "x", "shape": [2], "datatype": "BYTES",
                                                   "data": ["a", "b"]}]}, {}),
    ("/v2/models/m/infer", {"id": "two", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
                                                     {"name": "y", "shape": [1], "datatype": "INT32", "data": [2]}]},
     {}),
    ("/v2/models/m/infer", {"id": "p", "parameters": {"a": 1},
                            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"id": "o", "outputs": [{"name": "output-0"}],
                            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"id": "e", "extra": 1,
                            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"id": "ip", "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
                                                    "parameters": {"content_type": "np"}}]}, {}),
    ("/v2/models/m/infer", {"id": "c", "inputs": [{"name": "x", "shape": ["1", 2.0], "datatype": "FP32",
                                                   "data": [1, 2]}]}, {}),  # pydantic coerces the shape
    ("/v2/models/m/infer", {"id": 7, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": 5, "shape": [1], "datatype": "FP32", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]}, {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": 1}]}, {}),
    ("/v2/models/m/infer", {"inputs": {"name": "x"}}, {}),
    ("/v2/models/m/infer", [1, 2], {}),
    ("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
     {"x-model-version": "9"}),  # no such version: 404
]


@pytest.mark.parametrize("path,body,headers", CASES)
async def test_fast_path_answers_like_kserve(path: str, body: Any, headers: dict[str, str]) -> None:
    app, dataplane = _app()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if path.startswith("/v2"):
        headers = {"content-type": "application/json", **headers}
    answers = []
    for asgi in (FastPath(app, dataplane, fast=False), FastPath(app, dataplane)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t") as client:
            answers.append(await client.post(path, content=raw, headers=headers))
    slow, fast = answers
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    if path.startswith("/v2") and slow.status_code == 200:
        # Only the generated response id (a uuid when the request has none) may differ.
        slow_body, fast_body = slow.json(), fast.json()
        if "id" not in body:
            slow_body.pop("id"), fast_body.pop("id")
        else:  # the same bytes: keys in kserve's order
            assert fast.content == slow.content
        assert fast_body == slow_body
    elif raw.startswith(b"[[") or raw.endswith(b"["):  # JSON syntax: each parser says where in its own words
        assert fast.json()["error"].split(":")[0] == slow.json()["error"].split(":")[0] == \
            "request body is not valid JSON"
    else:
        assert fast.json() == slow.json()
        if slow.status_code >= 400:  # one format: {"error": "<one line>"}, never the body echoed
            assert list(fast.json()) == ["error"] and "\n" not in fast.json()["error"]
            assert len(fast.content) < 4096 and (len(raw) < 20 or raw[:40].decode("latin-1") not in fast.text)
    assert fast.headers["content-type"] == slow.headers["content-type"]


async def _post(asgi: Any, path: str, content: Any, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t") as client:
        return await client.post(path, content=content, headers=headers)


@pytest.mark.parametrize("fast", [True, False])
async def test_a_body_over_the_limit_is_413_before_it_is_read(fast: bool) -> None:
    app, dataplane = _app()
    asgi = FastPath(app, dataplane, fast=fast, max_body_bytes=100)
    reads = 0

    async def chunks() -> Any:
        nonlocal reads
        for _ in range(1000):  # 100 KB, chunked: refused once past 100 bytes, never read whole
            reads += 1
            yield b"x" * 100

    answer = await _post(asgi, "/v1/models/m:predict", chunks(), {})
    assert answer.status_code == 413 and "100-byte limit" in answer.json()["error"] and reads < 1000
    answer = await _post(asgi, "/v2/models/m/infer", b"x" * 101, {"content-type": "application/json"})
    assert answer.status_code == 413 and "101 bytes" in answer.json()["error"]  # from its Content-Length
    assert "TS_MAX_REQUEST_SIZE" in answer.json()["error"]
    answer = await _post(asgi, "/v2/models/m", b"x" * 101, {})  # any route: the limit is the server's
    assert answer.status_code == 413
    answer = await _post(asgi, "/v1/models/m:predict", b'{"instances": [[1]]}', {})
    assert answer.status_code == 200


async def test_an_answer_before_the_body_closes_the_connection_only_for_expect_100_continue() -> None:
    app, dataplane = _app()
    asgi = FastPath(app, dataplane, max_body_bytes=10)
    waiting = await _post(asgi, "/v1/models/m:predict", b"x" * 11, {"expect": "100-continue"})
    assert waiting.status_code == 413 and waiting.headers["connection"] == "close"  # it will send no body
    sending = await _post(asgi, "/v1/models/m:predict", b"x" * 11, {})
    assert sending.status_code == 413 and "connection" not in sending.headers  # its body is read and dropped


async def test_failures_are_logged_once_a_bug_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    app, dataplane = _app()

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken, methods=["GET"])
    caplog.set_level("INFO")
    ours = FastPath(app, dataplane)
    failed = await _post(ours, "/v1/models/m:predict", b'{"instances": ["boom"]}', {"x-request-id": "r-1"})
    bug = await _get(ours, "/broken")  # answered, and not raised on to the server (which would log it again)
    assert failed.status_code == 500 and bug.status_code == 500
    assert bug.json() == {"error": "internal error (RuntimeError); the server log has the details"}
    lines = [r for r in caplog.records if r.name.startswith("kserve")]
    assert [(r.levelname, r.exc_info is not None) for r in lines] == [("WARNING", False), ("ERROR", True)]
    assert lines[0].getMessage() == ("request failed: 500 POST /v1/models/m:predict (request id r-1): "
                                     "model m failed: its handler raised an error")
    assert lines[1].getMessage().startswith("request failed: 500 GET /broken: internal error (RuntimeError)")


async def _get(asgi: Any, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t") as client:
        return await client.get(path)
