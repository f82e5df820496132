from __future__ import annotations

import copy
from typing import Any

import fastapi
import httpx
import schemathesis
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from schemathesis.core.result import Ok

from kserve_torchserve.management.api import ManagementApi
from kserve_torchserve.serving.openapi import KEY_SCHEME, extend, install


def app_with_our_routes() -> fastapi.FastAPI:
    """kserve's v1/v2 routes and our /models routes, registered as rest.LeanRESTServer does (no server:
    routes only read their endpoints' signatures)."""
    app = fastapi.FastAPI()
    api = ManagementApi.__new__(ManagementApi)  # routes() needs no state
    for path, endpoint, methods in api.routes():
        app.add_api_route(path, endpoint, methods=methods)
    app.add_api_route("/metrics", lambda: None, methods=["GET"])
    register_v1_endpoints(app, None, None)
    register_v2_endpoints(app, None, None)
    return app


def operation(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return schema["paths"][path][method]  # type: ignore[no-any-return]


def parameters(op: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["in"], p["name"]) for p in op.get("parameters", [])}


def test_extend_describes_what_fastapi_cannot_see() -> None:
    schema = extend(app_with_our_routes().openapi())
    predict = operation(schema, "/v1/models/{model_name}:predict", "post")
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/V1Request"}
    assert ("header", "x-model-version") in parameters(predict)
    assert {"400", "404", "413", "500", "503", "504", "507"} <= set(predict["responses"])
    versioned = operation(schema, "/v2/models/{model_name}/versions/{model_version}/infer", "post")
    assert {("path", "model_name"), ("path", "model_version")} <= parameters(versioned)
    assert ("header", "x-model-version") not in parameters(versioned)  # the path says which
    register = operation(schema, "/models", "post")
    assert register["security"] == [{KEY_SCHEME: []}]
    assert ("query", "url") in parameters(register) and "202" in register["responses"]
    assert schema["components"]["securitySchemes"][KEY_SCHEME]["scheme"] == "bearer"
    assert "security" not in operation(schema, "/models", "get")  # reads need no key
    traffic = operation(schema, "/models/{name}/traffic", "put")
    assert traffic["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TrafficSplit")
    assert {("query", "min_worker"), ("query", "max_worker")} <= parameters(operation(schema, "/models/{name}", "put"))
    assert "text/plain" in operation(schema, "/metrics", "get")["responses"]["200"]["content"]


def test_every_operation_loads_in_schemathesis() -> None:
    schema = schemathesis.openapi.from_dict(extend(app_with_our_routes().openapi()))
    results = list(schema.get_all_operations())
    assert results and all(isinstance(r, Ok) for r in results), [r for r in results if not isinstance(r, Ok)]


def test_extend_is_idempotent() -> None:
    once = extend(app_with_our_routes().openapi())
    assert extend(copy.deepcopy(once)) == once


def test_extend_leaves_a_document_without_our_routes_as_it_was_apart_from_components() -> None:
    schema = extend({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}})
    assert schema["paths"] == {} and "Error" in schema["components"]["schemas"]


async def test_install_makes_the_app_serve_the_extended_document() -> None:
    app = app_with_our_routes()
    install(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        served = (await client.get("/openapi.json")).json()
        again = (await client.get("/openapi.json")).json()
    assert served == again == extend(app_with_our_routes().openapi())
