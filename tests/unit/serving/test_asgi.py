"""The fast path's ASGI pieces: route recognition, the plain-JSON test, the version rewrite."""

from __future__ import annotations

from typing import Any

import pytest

from kserve_torchserve.serving.asgi import plain_json, route, unversioned


@pytest.mark.parametrize("path, expected", [
    ("/v1/models/digits:predict", ("v1", "digits")),
    ("/v2/models/digits/infer", ("v2", "digits")),
    ("/v1/models/:predict", None),
    ("/v1/models/a/b:predict", None),
    ("/v2/models/digits/versions/2/infer", None),  # rewritten first by unversioned()
    ("/v1/models/digits:explain", None),
    ("/v2/models/digits/ready", None),
])
def test_only_our_predict_routes_are_recognised(path: str, expected: tuple[str, str] | None) -> None:
    assert route(path) == expected


@pytest.mark.parametrize("headers, required, expected", [
    ([], False, True),  # kserve's v1 endpoint reads an undeclared body as JSON
    ([], True, False),  # FastAPI parses a v2 body only when declared JSON
    ([(b"content-type", b"application/json; charset=utf-8")], True, True),
    ([(b"content-type", b"Application/JSON")], True, True),
    ([(b"content-type", b"text/plain")], False, False),
    ([(b"content-type", b"application/json"), (b"ce-id", b"1")], False, False),  # CloudEvents: kserve's
    ([(b"content-type", b"application/json"), (b"inference-header-content-length", b"9")], True, False),
])
def test_plain_json_leaves_other_decodings_to_kserve(headers: list[tuple[bytes, bytes]], required: bool,
                                                     expected: bool) -> None:
    assert plain_json(headers, required) is expected


def _scope(path: str, query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "path": path, "raw_path": path.encode(), "query_string": query,
            "headers": [(b"x-model-version", b"stale")]}


def test_a_version_in_the_path_or_the_query_becomes_the_header() -> None:
    scope = unversioned(_scope("/v2/models/m/versions/2.0/infer"))
    assert (scope["path"], scope["raw_path"]) == ("/v2/models/m/infer", b"/v2/models/m/infer")
    assert scope["headers"] == [(b"x-model-version", b"2.0")]
    scope = unversioned(_scope("/v2/models/m/ready", b"a=1&model_version=1.0"))
    assert scope["path"] == "/v2/models/m/ready" and scope["query_string"] == b"a=1"
    assert scope["headers"] == [(b"x-model-version", b"1.0")]
    untouched = _scope("/v1/models/m:predict", b"model_version=1")
    assert unversioned(untouched) is untouched


def test_a_version_outside_latin1_does_not_break_the_rewrite() -> None:
    scope = unversioned(_scope("/v2/models/m\u00e4/versions/\u20ac/infer"))
    assert scope["raw_path"] == b"/v2/models/m%C3%A4/infer"
    assert scope["headers"] == [(b"x-model-version", "\u20ac".encode())]
