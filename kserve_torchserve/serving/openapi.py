"""Our routes in ``/openapi.json``, described as a client (or a fuzzer) needs them.

FastAPI builds the document from route signatures, and three kinds of our routes have
none worth the name:
- kserve's v1 ``:predict`` / ``:explain`` read the raw body: no request body is described;
- the fast path's versioned ``POST /v2/models/{m}/versions/{v}/infer`` has no FastAPI route
  at all (``rest_fastpath.unversioned`` rewrites it);
- the ``/models`` routes (``management/api.py``) read their parameters by hand, from the
  query string or the body, and answer TorchServe's error object.
``extend`` adds request bodies, parameters (``x-model-version`` included), the bearer key
of the ``/models`` writes and the error answers each route gives. It only sets keys, so
calling it again on its own output changes nothing; ``install`` makes a FastAPI app serve
the extended document.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # management/security.py's NAME
KEY_SCHEME = "modelApiKey"

_REF = "#/components/schemas/"
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
          "description": "A request that failed: one short message, never the request echoed."}
_MANAGEMENT_ERROR = {"type": "object", "required": ["code", "type", "message"],
                     "properties": {"code": {"type": "integer"}, "type": {"type": "string"},
                                    "message": {"type": "string"}},
                     "description": "TorchServe's management API error object."}
_V1_REQUEST = {
    "type": "object",
    "description": "KServe v1: one model call per instance, answered in order. A dict instance is one "
                   "input per key; {\"b64\": ...} carries raw bytes.",
    "properties": {"instances": {"type": "array", "minItems": 1, "items": {}},
                   "inputs": {"type": "array", "minItems": 1, "items": {}}},
    "example": {"instances": [[1.0, 2.0, 3.0]]},
}
_V1_PREDICTIONS = {"type": "object", "required": ["predictions"],
                   "properties": {"predictions": {"type": "array", "items": {}}}}
_V1_EXPLANATIONS = {"type": "object", "required": ["explanations"],
                    "properties": {"explanations": {"type": "array", "items": {}}}}
_TRAFFIC = {
    "type": "object",
    "description": "A traffic split across a model's versions: percentages summing to 100.",
    "properties": {
        "weights": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}},
        "shadow": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}},
        "sticky_header": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
        "guard": {"type": "object", "required": ["version", "max_error_rate"],
                  "properties": {"version": {"type": "string"},
                                 "max_error_rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                                 "min_requests": {"type": "integer", "minimum": 1},
                                 "window_s": {"type": "number", "exclusiveMinimum": 0}}},
    },
    "required": ["weights"],
    "example": {"weights": {"1.0": 80, "2.0": 20}},
}
_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}}
_SCHEMAS = {"Error": _ERROR, "ManagementError": _MANAGEMENT_ERROR, "V1Request": _V1_REQUEST,
            "V1Predictions": _V1_PREDICTIONS, "V1Explanations": _V1_EXPLANATIONS, "TrafficSplit": _TRAFFIC,
            "ManagementStatus": _STATUS}

# What each failure means on the inference routes (README "Errors").
_INFERENCE_ERRORS = {
    "400": "bad input", "404": "unknown model or version", "408": "the client sent its request too slowly",
    "413": "too many instances or too large a body", "415": "a Content-Type the route cannot read",
    "500": "the handler failed", "503": "not ready, restarting or overloaded (Retry-After)",
    "504": "the handler took longer than its responseTimeout", "507": "a worker ran out of memory",
}
_MANAGEMENT_ERRORS = {
    "400": "a bad parameter", "401": "missing or wrong key", "403": "the management API is off",
    "404": "unknown model or version", "409": "the model or version exists already",
    "413": "parameters too large", "500": "TorchServe failed the change", "503": "TorchServe is restarting",
}


def _parameter(name: str, where: str, schema: dict[str, Any], description: str,
               required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_VERSION_HEADER = _parameter("x-model-version", "header", {"type": "string", "pattern": NAME_PATTERN},
                             "answer with this version of the model (the response says which answered)")
_MODEL_VERSION_PATH = _parameter("model_version", "path", {"type": "string"}, "the model version")
_INT = {"type": "integer", "minimum": 1}
_BOOL = {"type": "boolean"}
_NAME = {"type": "string", "pattern": NAME_PATTERN}
_REGISTER = [
    _parameter("url", "query", {"type": "string", "minLength": 1},
               "where the model is: a storage URI the allow-list (TS_ALLOWED_URLS) admits", required=True),
    _parameter("model_name", "query", _NAME, "the name to serve it under (default: the archive's)"),
    _parameter("model_version", "query", _NAME, "its version (default: the archive's)"),
    _parameter("batch_size", "query", _INT, "TorchServe's dynamic batch size"),
    _parameter("max_batch_delay", "query", {"type": "integer", "minimum": 0}, "ms to wait to fill a batch"),
    _parameter("initial_workers", "query", _INT, "workers to start"),
    _parameter("response_timeout", "query", _INT, "seconds a handler may take per batch"),
    _parameter("synchronous", "query", _BOOL, "answer when the workers are ready (else 202 at once)"),
]
_SCALE = [
    _parameter("min_worker", "query", _INT, "workers to keep"),
    _parameter("max_worker", "query", _INT, "workers at most"),
    _parameter("synchronous", "query", _BOOL, "answer when the workers are there"),
]
_LIST = [
    _parameter("limit", "query", {"type": "integer", "minimum": 0, "maximum": 100}, "models per page"),
    _parameter("next_page_token", "query", {"type": "string"}, "where the page starts"),
]


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF + ref}}}


def _add_parameters(operation: dict[str, Any], parameters: list[dict[str, Any]]) -> None:
    """Set each parameter, replacing one of the same name and place (so extending twice adds nothing)."""
    listed = operation.setdefault("parameters", [])
    for parameter in parameters:
        key = (parameter["name"], parameter["in"])
        listed[:] = [p for p in listed if (p.get("name"), p.get("in")) != key]
        listed.append(copy.deepcopy(parameter))


def _add_errors(operation: dict[str, Any], errors: dict[str, str], schema: str) -> None:
    responses = operation.setdefault("responses", {})
    for status, description in errors.items():
        responses[status] = {"description": description, "content": _json(schema)}


def _inference(operation: dict[str, Any], body: str | None, answer: str | None) -> None:
    _add_parameters(operation, [_VERSION_HEADER])
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    if answer is not None:
        operation.setdefault("responses", {})["200"] = {"description": "the model's answer",
                                                        "content": _json(answer)}
    _add_errors(operation, _INFERENCE_ERRORS, "Error")


def _management(operation: dict[str, Any], parameters: list[dict[str, Any]], write: bool) -> None:
    _add_parameters(operation, parameters)
    if write:
        operation["security"] = [{KEY_SCHEME: []}]
        operation.setdefault("responses", {})["200"] = {"description": "done", "content": _json("ManagementStatus")}
    _add_errors(operation, _MANAGEMENT_ERRORS if write else {"404": _MANAGEMENT_ERRORS["404"]}, "ManagementError")


def _operations() -> list[tuple[str, str, Callable[[dict[str, Any]], None]]]:
    """(path, method, what to add to that operation) for every route of ours that FastAPI under-describes."""
    return [
        ("/v1/models/{model_name}:predict", "post", lambda op: _inference(op, "V1Request", "V1Predictions")),
        ("/v1/models/{model_name}:explain", "post", lambda op: _inference(op, "V1Request", "V1Explanations")),
        ("/v2/models/{model_name}/infer", "post", lambda op: _inference(op, None, None)),
        ("/models", "get", lambda op: _management(op, _LIST, write=False)),
        ("/models", "post", _register),
        ("/models/{name}", "put", lambda op: _management(
            op, [*_SCALE, _parameter("model_version", "query", _NAME, "the version to scale")], write=True)),
        ("/models/{name}/{version}", "put", lambda op: _management(op, _SCALE, write=True)),
        ("/models/{name}", "delete", lambda op: _management(op, [], write=True)),
        ("/models/{name}/{version}", "delete", lambda op: _management(op, [], write=True)),
        ("/models/{name}/{version}/set-default", "put", lambda op: _management(op, [], write=True)),
        ("/models/{name}", "get", lambda op: _management(op, [], write=False)),
        ("/models/{name}/{version}", "get", lambda op: _management(op, [], write=False)),
        ("/models/{name}/traffic", "get", lambda op: _management(op, [], write=False)),
        ("/models/{name}/traffic", "put", _traffic_write),
    ]


def _register(operation: dict[str, Any]) -> None:
    _management(operation, _REGISTER, write=True)
    operation["responses"]["202"] = {"description": "registering (synchronous=false)",
                                     "content": _json("ManagementStatus")}


def _traffic_write(operation: dict[str, Any]) -> None:
    _management(operation, [], write=True)
    operation["requestBody"] = {"required": True, "content": _json("TrafficSplit")}


def _versioned_infer(paths: dict[str, Any]) -> None:
    """The fast path's versioned v2 route: the plain route's operation with the version in the path."""
    plain = paths.get("/v2/models/{model_name}/infer", {}).get("post")
    if plain is None:
        return
    operation = copy.deepcopy(plain)
    operation["operationId"] = "infer_version_v2_models__model_name__versions__model_version__infer_post"
    operation["summary"] = "Infer with one version"
    operation["parameters"] = [p for p in operation.get("parameters", [])
                               if p.get("name") not in ("model_version", "x-model-version")]
    _add_parameters(operation, [_MODEL_VERSION_PATH])
    paths["/v2/models/{model_name}/versions/{model_version}/infer"] = {"post": operation}


def extend(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's document for kserve's app with our routes) with our routes described."""
    paths: dict[str, Any] = schema.setdefault("paths", {})
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(_SCHEMAS))
    components.setdefault("securitySchemes", {})[KEY_SCHEME] = {
        "type": "http", "scheme": "bearer", "description": "TS_MODEL_API_KEY (or --model_api_key_file)"}
    for path, method, describe in _operations():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            describe(operation)
    _versioned_infer(paths)
    metrics = paths.get("/metrics", {}).get("get")
    if metrics is not None:
        metrics["responses"] = {"200": {"description": "Prometheus text format",
                                        "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return schema


def install(app: Any) -> None:
    """Serve the extended document from ``app`` (a FastAPI app): its ``openapi()`` builds and caches
    FastAPI's document, and ``extend`` is idempotent, so each call returns the same extended one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        return extend(build())

    app.openapi = openapi
