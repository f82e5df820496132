"""Storage URI -> a local directory (or file), through kserve_storage, KServe's own downloader.

A URI that is already local (KServe's storage initializer has put the model at
/mnt/models, or a path on disk) is used in place: nothing is copied.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import StartupError

logger = logging.getLogger(__name__)

_FILE_PREFIX = "file://"


def local_path(uri: str) -> Path | None:
    """The path a local URI names, or None for a remote one."""
    path = Path(uri[len(_FILE_PREFIX):] if uri.startswith(_FILE_PREFIX) else uri)
    if uri.startswith(_FILE_PREFIX) or path.exists():
        return path
    return None


def fetch(uri: str, download_dir: Path) -> Path:
    """Make ``uri`` available locally; StartupError names the URI and the cause."""
    local = local_path(uri)
    if local is not None:
        if not local.exists():
            raise StartupError(f"storage URI {uri}: {local} does not exist")
        logger.info("using model at %s in place", local)
        return local
    if "://" not in uri:
        raise StartupError(
            f"storage URI {uri}: no such local path, and no scheme (expected a path, file://, s3://, gs://, "
            "pvc://, http(s)://, or an Azure blob URL)"
        )
    from kserve_storage import Storage

    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        return Path(Storage.download(uri, out_dir=str(download_dir)))
    except Exception as exc:  # kserve_storage raises bare Exception/RuntimeError for every cause
        raise StartupError(f"storage URI {uri}: download failed: {exc}") from None
