"""TokenSource against a stand-in for TorchServe's /token endpoint (the real one: test_lifecycle)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from kserve_torchserve.backend.auth import TokenSource, TokenUnavailable

NOW = 1_800_000_000.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def write_keys(path: Path, inference: str, expires: float) -> None:
    path.write_text(json.dumps({
        "management": {"key": "mgmt", "expiration time": _iso(expires)},
        "inference": {"key": inference, "expiration time": _iso(expires)},
        "API": {"key": "api-key"},
    }))


class TokenEndpoint:
    """Rewrites the key file like TorchServe does when called with the API key."""

    def __init__(self, key_file: Path) -> None:
        self.calls: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                endpoint.calls.append(self.path)
                if self.headers.get("Authorization") != "Bearer api-key":
                    self.send_response(400)
                    self.end_headers()
                    return
                write_keys(key_file, f"fresh-{len(endpoint.calls)}", NOW + 600)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[TokenEndpoint]:
    ep = TokenEndpoint(tmp_path / "key_file.json")
    yield ep
    ep.server.shutdown()


async def test_fresh_key_is_used_without_renewal(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    write_keys(tmp_path / "key_file.json", "k1", NOW + 600)
    tokens = TokenSource(tmp_path / "key_file.json", endpoint.url, clock=lambda: NOW)
    assert await tokens.metadata("inference") == (("authorization", "Bearer k1"),)
    assert endpoint.calls == []


async def test_key_near_expiry_is_renewed_first(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    write_keys(tmp_path / "key_file.json", "k1", NOW + 600)
    clock = [NOW]
    tokens = TokenSource(tmp_path / "key_file.json", endpoint.url, clock=lambda: clock[0])
    await tokens.metadata("inference")
    clock[0] = NOW + 590  # 10s of 600 left: renew before using it
    assert await tokens.metadata("inference") == (("authorization", "Bearer fresh-1"),)
    assert endpoint.calls == ["/token?type=inference"]


async def test_rejection_renews_once_and_returns_the_new_key(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    write_keys(tmp_path / "key_file.json", "k1", NOW + 600)
    tokens = TokenSource(tmp_path / "key_file.json", endpoint.url, clock=lambda: NOW)
    sent = await tokens.metadata("inference")
    assert await tokens.on_rejected("inference", sent) == (("authorization", "Bearer fresh-1"),)
    # A second caller that also sent the old key does not renew again.
    assert await tokens.on_rejected("inference", sent) == (("authorization", "Bearer fresh-1"),)
    assert len(endpoint.calls) == 1


async def test_missing_key_file_is_unavailable(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    tokens = TokenSource(tmp_path / "key_file.json", endpoint.url, clock=lambda: NOW)
    with pytest.raises(TokenUnavailable, match="has not written"):
        await tokens.metadata("inference")


async def test_refused_renewal_is_unavailable(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({
        "management": {"key": "m", "expiration time": _iso(NOW - 1)},
        "inference": {"key": "i", "expiration time": _iso(NOW - 1)},
        "API": {"key": "wrong"},
    }))
    tokens = TokenSource(key_file, endpoint.url, clock=lambda: NOW)
    with pytest.raises(TokenUnavailable, match="refused to renew its inference key: HTTP 400"):
        await tokens.metadata("inference")


async def test_disabled_auth_sends_nothing(tmp_path: Path) -> None:
    tokens = TokenSource(tmp_path / "missing.json", "http://127.0.0.1:1", enabled=False)
    assert await tokens.metadata("management") == ()
