"""TorchServe token authorization: read key_file.json, keep the keys fresh.

TorchServe writes ``key_file.json`` into its working directory with an inference
key, a management key (both expire after ``token_expiration_min``) and an API key
that never expires. The API key buys fresh keys from the management API
(``POST /token?type=inference``), which rewrites the file. We refresh shortly before
expiry so requests never see a rejected token, and once more on a rejection to
cover a race with another refresh or a restarted TorchServe.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Literal

import requests

KeyKind = Literal["inference", "management"]
Metadata = tuple[tuple[str, str], ...]

# Refresh when less than this share of a key's lifetime (or this many seconds) is left.
_REFRESH_SHARE = 0.2
_REFRESH_MIN_S = 5.0


class TokenUnavailable(Exception):
    """No usable key: TorchServe has not written its key file, or refused to renew a key."""


@dataclass
class _Key:
    value: str
    expires_at: float  # time.time() seconds
    lifetime_s: float


def _parse_expiry(text: str) -> float:
    # TorchServe writes Java Instants with nanoseconds ("...:11.254735129Z");
    # Python's parser takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


class TokenSource:
    """Bearer headers/metadata for TorchServe's REST and gRPC APIs; ``enabled=False`` when token auth is off."""

    def __init__(
        self,
        key_file: Path,
        management_url: str,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_file = key_file
        self._management_url = management_url.rstrip("/")
        self.enabled = enabled
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._metadata: dict[str, Metadata] = {}
        self._api_key: str | None = None
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """Forget cached keys (TorchServe restarted and wrote new ones)."""
        self._keys.clear()
        self._metadata.clear()
        self._api_key = None

    def _load(self) -> None:
        try:
            data = json.loads(self._key_file.read_text())
        except FileNotFoundError:
            raise TokenUnavailable(f"TorchServe has not written {self._key_file} yet") from None
        except ValueError:
            raise TokenUnavailable(f"{self._key_file} is not valid JSON (being written?)") from None
        now = self._clock()
        for kind in ("inference", "management"):
            expires_at = _parse_expiry(data[kind]["expiration time"])
            previous = self._keys.get(kind)
            lifetime = max(expires_at - now, 1.0) if previous is None or previous.value != data[kind]["key"] else previous.lifetime_s
            self._keys[kind] = _Key(data[kind]["key"], expires_at, lifetime)
            self._metadata[kind] = (("authorization", f"Bearer {data[kind]['key']}"),)
        self._api_key = data["API"]["key"]

    def _fresh(self, kind: KeyKind) -> bool:
        key = self._keys.get(kind)
        if key is None:
            return False
        left = key.expires_at - self._clock()
        return left > max(_REFRESH_MIN_S, key.lifetime_s * _REFRESH_SHARE)

    async def metadata(self, kind: KeyKind) -> Metadata:
        """Metadata to send with a call; cheap when the cached key is fresh (the common case)."""
        if not self.enabled:
            return ()
        if self._fresh(kind):
            return self._metadata[kind]
        async with self._lock:
            if not self._fresh(kind):
                await self._renew(kind)
        return self._metadata[kind]

    async def on_rejected(self, kind: KeyKind, sent: Metadata) -> Metadata:
        """TorchServe rejected ``sent``: renew unless someone already did, return what to retry with."""
        async with self._lock:
            if self._metadata.get(kind) == sent or kind not in self._metadata:
                await self._renew(kind, force=True)
        return self._metadata[kind]

    async def _renew(self, kind: KeyKind, force: bool = False) -> None:
        self._load()  # TorchServe may have renewed (or restarted) on its own
        if not force and self._fresh(kind):
            return
        await asyncio.to_thread(self._request_new_key, kind)
        self._load()

    def _request_new_key(self, kind: KeyKind) -> None:
        try:
            response = requests.post(
                f"{self._management_url}/token",
                params={"type": kind},
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=10,
            )
        except requests.RequestException as exc:
            raise TokenUnavailable(f"could not renew TorchServe's {kind} key: {exc}") from None
        if response.status_code != 200:
            raise TokenUnavailable(
                f"TorchServe refused to renew its {kind} key: HTTP {response.status_code} {response.text[:200]}"
            )
