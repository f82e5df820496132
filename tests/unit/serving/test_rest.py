from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kserve_torchserve.errors import ManagementError
from kserve_torchserve.serving import errors
from kserve_torchserve.serving.rest import LeanRESTServer, TorchServeDataPlane, management_error_handler
from tests.unit.fake_torchserve import two_models


def _server() -> tuple[LeanRESTServer, FastAPI]:
    registry = two_models()
    rest = LeanRESTServer("unused:app", TorchServeDataPlane(model_registry=registry),
                          ModelRepositoryExtension(model_registry=registry), 0)
    app = FastAPI(default_response_class=ORJSONResponse)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    return rest, app


def test_uvicorn_runs_our_protocol_with_request_deadlines() -> None:
    rest, _ = _server()
    assert issubclass(rest.config.http, HttpToolsProtocol) and rest.config.http.__name__ == "TimedProtocol"


def test_one_handler_answers_every_failure_on_kserves_app() -> None:
    _, app = _server()
    for kind in (InvalidInput, ModelNotReady, RequestValidationError, HTTPException, Exception):
        assert app.exception_handlers[kind] is errors.handle


async def test_kserves_own_errors_are_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """kserve's handlers logged every one of these at ERROR with its traceback (18-31 lines)."""
    _, app = _server()
    caplog.set_level("INFO")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        not_ready = await client.post("/v1/models/starting:predict", json={"instances": [[1]]})
        bad = await client.post("/v1/models/m:predict", content=b"{", headers={"x-request-id": "r-9"})
        unknown = await client.get("/v2/models/nope")
    assert (not_ready.status_code, bad.status_code, unknown.status_code) == (503, 400, 404)
    assert all(list(answer.json()) == ["error"] for answer in (not_ready, bad, unknown))
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name.startswith("kserve")]
    assert lines == [
        ("WARNING", "request failed: 503 POST /v1/models/starting:predict: Model with name starting is not ready.",
         None),
        ("INFO", "request failed: 400 POST /v1/models/m:predict (request id r-9): Unrecognized request format: "
                 "unexpected end of data: line 1 column 2 (char 1)", None),
        ("INFO", "request failed: 404 GET /v2/models/nope: Model with name nope does not exist.", None),
    ]


async def test_repository_errors_keep_their_format_and_log_one_line(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()

    async def load() -> None:
        raise ManagementError(404, "no model at /mnt/models/x")

    app.add_api_route("/v2/repository/models/x/load", load, methods=["POST"])
    app.add_exception_handler(ManagementError, management_error_handler)  # type: ignore[arg-type]
    caplog.set_level("INFO")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answer = await client.post("/v2/repository/models/x/load")
    assert answer.status_code == 404 and answer.json() == {"error": "no model at /mnt/models/x"}
    (line,) = [r for r in caplog.records if r.name.startswith("kserve")]
    assert line.levelname == "INFO" and "404 POST /v2/repository/models/x/load" in line.getMessage()
