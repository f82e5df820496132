"""Where a model added at run time comes from, made local before anything is registered.

- a ``url`` from ``POST /models``: checked against the allow-list before a byte is
  fetched, then fetched in a child process by the same code as start-up (every storage
  scheme), each redirect checked again; or the file name of an archive already in the
  model store (nothing fetched);
- a name from the v2 repository extension (KServe's agent): ``<storage dir>/<name>``
  (a directory, or one file ``<name>.mar``/``.tar.gz``/``.pt``...), never a URL.
Each gets a private work directory under ``<work_dir>/registrations``; it is deleted
when the model is unregistered (or at once, when registering fails).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Awaitable, Callable

from ..errors import ManagementError, StartupError, shown
from ..model_store.url_policy import UrlPolicy

Fetch = Callable[[str, Path, tuple[str, ...]], Awaitable[Path]]  # (url, download dir, allow-list) -> local path
_REPOSITORY_SUFFIXES = (".mar", ".tar.gz", ".tgz", ".pt", ".pth", ".zip")


class Sources:
    def __init__(self, root: Path, store_root: Path, storage_dir: Path | None, policy: UrlPolicy,
                 patterns: tuple[str, ...], fetch: Fetch) -> None:
        self.root = root  # <work_dir>/registrations
        self.store_root = store_root
        self.storage_dir = storage_dir  # the local copy of --storage_uri (None: it is a single file)
        self._policy = policy
        self._patterns = patterns
        self._fetch = fetch

    def work_dir(self) -> Path:
        path = self.root / secrets.token_hex(6)
        path.mkdir(parents=True)
        return path

    @staticmethod
    def forget(work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)

    async def from_url(self, url: str, work: Path) -> Path:
        """The artifact behind ``url``, local; ManagementError 400/403/404 before any fetch, 400 if it fails."""
        if "/" not in url and ":" not in url:  # a file name in the model store: TorchServe's own convention
            if url.startswith(".") or not (self.store_root / url).exists():
                raise ManagementError(404, f"no archive named {shown(url)} in the model store", "ModelNotFoundException")
            return self.store_root / url
        self._policy.check(url)
        try:
            return await self._fetch(url, work / "download", self._patterns)
        except StartupError as exc:
            raise ManagementError(400, str(exc), "DownloadArchiveException") from None

    def from_repository(self, name: str) -> Path:
        """``<storage dir>/<name>``, as KServe's agent leaves a TrainedModel; 404 naming where it looked."""
        if self.storage_dir is None or not self.storage_dir.is_dir():
            raise ManagementError(404, f"model {name} not found: the server has no storage directory to load from")
        directory = self.storage_dir / name
        if directory.exists():
            return directory
        for suffix in _REPOSITORY_SUFFIXES:
            if (self.storage_dir / f"{name}{suffix}").is_file():
                return self.storage_dir / f"{name}{suffix}"
        raise ManagementError(404, f"model {name} not found: looked for {directory}")
