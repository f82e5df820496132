from __future__ import annotations

from typing import Any

import pytest

from kserve_torchserve.serving import limits


def _receiver(*messages: dict[str, Any]) -> tuple[Any, list[int]]:
    given = [0]

    async def receive() -> dict[str, Any]:
        given[0] += 1
        return messages[given[0] - 1]

    return receive, given


async def test_a_body_is_read_whole_up_to_the_limit() -> None:
    receive, _ = _receiver({"type": "http.request", "body": b"ab", "more_body": True},
                           {"type": "http.request", "body": b"cd", "more_body": False})
    assert await limits.read_body(receive, 4) == b"abcd"


async def test_reading_stops_as_soon_as_the_body_passes_the_limit() -> None:
    chunk = {"type": "http.request", "body": b"x" * 10, "more_body": True}
    receive, given = _receiver(*[chunk] * 100)
    with pytest.raises(limits.BodyTooLarge, match="request body is over the 25-byte limit: .*TS_MAX_REQUEST_SIZE"):
        await limits.read_body(receive, 25)
    assert given[0] == 3


async def test_a_client_gone_mid_body_is_a_connection_error() -> None:
    receive, _ = _receiver({"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ConnectionError):
        await limits.read_body(receive, 100)


def test_the_declared_length_is_read_from_the_head() -> None:
    assert limits.declared_length([(b"content-length", b"12")]) == 12
    assert limits.declared_length([(b"content-length", b"x")]) is None
    assert limits.declared_length([]) is None


@pytest.mark.parametrize("protocol,headers,refused", [
    ("v1", [], False),  # undeclared: JSON, as kserve reads it
    ("v1", [(b"content-type", b"application/json; charset=utf-8")], False),
    ("v1", [(b"content-type", b"application/cloudevents+json")], False),
    ("v1", [(b"content-type", b"application/x-www-form-urlencoded")], False),  # curl -d
    ("v1", [(b"content-type", b"application/octet-stream")], False),  # kserve parses it as JSON too
    ("v1", [(b"content-type", b"text/plain")], True),
    ("v1", [(b"content-type", b"multipart/form-data; boundary=x")], True),
    ("v1", [(b"content-type", b"image/png"), (b"ce-id", b"1")], False),  # a binary CloudEvent: kserve's
    ("v2", [(b"content-type", b"application/json")], False),
    ("v2", [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", b"10")], False),
    ("v2", [(b"content-type", b"application/x-www-form-urlencoded")], True),
    ("v2", [(b"content-type", b"text/plain")], True),
])
def test_inference_routes_refuse_bodies_they_cannot_read(protocol: str, headers: list[tuple[bytes, bytes]],
                                                         refused: bool) -> None:
    why = limits.content_type_refusal(protocol, headers)
    assert (why is not None) == refused
    if why:
        assert why.startswith("unsupported Content-Type: send the body as application/json")


def test_expect_100_continue_is_seen() -> None:
    assert limits.expects_continue([(b"expect", b"100-Continue")])
    assert not limits.expects_continue([(b"content-length", b"1")])


def test_the_limit_is_torchserves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TS_MAX_REQUEST_SIZE", raising=False)
    assert limits.max_body_bytes() == 6553600
    monkeypatch.setenv("TS_MAX_REQUEST_SIZE", "65536")
    assert limits.max_body_bytes() == 65536
