"""The parameters of a management call, wherever the client put them, checked and bounded.

TorchServe reads only the query string; the curl in KServe's documentation sends form fields
(``-F``), and clients send JSON. All of them are read here, the body bounded (parameters only:
a model comes by its url), and integers held to ranges that bound what one key holder can make
TorchServe do.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..errors import ManagementError

_MAX_BODY = 64 * 1024  # parameters only: models come by url
# (lowest, highest) for each integer parameter. The highest bounds what one key holder can make
# TorchServe do: each worker is a process with its own copy of the model.
_INT_PARAMS = {"batch_size": (1, 4096), "max_batch_delay": (0, 600_000), "initial_workers": (1, 64),
               "response_timeout": (1, 86_400), "min_worker": (1, 64), "max_worker": (1, 64)}


async def parameters(request: Request) -> dict[str, str]:
    """Query string, then the body's fields (JSON, urlencoded or multipart) on top."""
    params = {k: v for k, v in request.query_params.items()}
    if request.method not in ("POST", "PUT"):
        return params
    declared = int(request.headers.get("content-length") or 0)
    if declared > _MAX_BODY:
        raise ManagementError(413, f"parameters over {_MAX_BODY} bytes: send the model by url")
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise ManagementError(413, f"parameters over {_MAX_BODY} bytes: send the model by url")
        try:
            data = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise ManagementError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ManagementError(400, "the JSON body must be an object of parameters")
        params.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()})
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form(max_files=0, max_fields=32)
        except HTTPException:  # starlette's answer to a malformed form, or one that holds a file
            raise ManagementError(400, "the form is malformed or holds a file: file uploads are not accepted, "
                                       "give the model's url") from None
        for key, value in form.items():
            if not isinstance(value, str):
                raise ManagementError(400, "file uploads are not accepted: give the model's url")
            params[key] = value
    return params


async def json_body(request: Request, what: str, example: str) -> Any:
    """The whole body as JSON, at most _MAX_BODY bytes; ``what`` and ``example`` word the errors."""
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise ManagementError(413, f"{what} over {_MAX_BODY} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ManagementError(400, f"the body must be JSON like {example}") from None


def integer(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    low, high = _INT_PARAMS[name]
    if value is None or not low <= value <= high:
        raise ManagementError(400, f"{name} must be an integer from {low} to {high}")
    return value


def flag(params: dict[str, str], name: str, default: bool) -> bool:
    raw = params.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ManagementError(400, f"{name} must be true or false")
    return raw == "true"
