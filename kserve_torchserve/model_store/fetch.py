"""Storage URI -> a local directory (or file), through kserve_storage, KServe's own downloader.

- A local path, ``file://`` or ``pvc://`` (KServe mounts a PVC at /mnt/pvc) is used in
  place: nothing is copied. A local .tar.gz/.tgz/.zip that is not a TorchServe
  archive is unpacked, as KServe does for remote archives.
- Remote schemes (s3://, gs://, http(s)://, Azure blob URLs, ...) go to
  kserve_storage. KServe's S3 variables are honoured as its storage initializer does:
  S3_ENDPOINT + S3_USE_HTTPS become AWS_ENDPOINT_URL when that is not set.
- Every archive is checked before it is unpacked (artifacts.check_zip / check_tar): no
  entry may leave the target directory, be a link, or expand past 100:1 beyond 16 MiB (a
  zip bomb stops here), there are at most 10,000 entries, and the unpacked size may not
  exceed a cap (--max_unpacked_bytes).
- Progress is logged every few seconds for long downloads, and the total at the end.
Errors are one line naming the URI (with any credentials in it removed) and the cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit, urlunsplit

from .archive_checks import check_tar, check_zip
from .artifacts import MANIFEST
from ..errors import ManagementError, StartupError
from .url_policy import UrlPolicy

logger = logging.getLogger(__name__)

_FILE_PREFIX = "file://"
_PVC_PREFIX = "pvc://"
PVC_MOUNT_ENV = "KSERVE_PVC_MOUNT_PATH"  # where KServe mounts PVCs; /mnt/pvc in a pod
DEFAULT_PVC_MOUNT = "/mnt/pvc"
DEFAULT_MAX_UNPACKED_BYTES = 32 * 2**30
PROGRESS_INTERVAL_S = 5.0
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def redact(uri: str) -> str:
    """The URI without user:password and query string (SAS tokens, signatures)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.scheme or not parts.netloc:
        return uri
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def local_path(uri: str, env: dict[str, str] | None = None) -> Path | None:
    """The path a local URI names (pvc:// mapped to KServe's mount), or None for a remote one."""
    env = dict(os.environ) if env is None else env
    if uri.startswith(_PVC_PREFIX):
        # pvc://<claim>/<path>: KServe mounts the claim at /mnt/pvc, so <path> is below it.
        rest = uri[len(_PVC_PREFIX):]
        sub = rest.split("/", 1)[1] if "/" in rest else ""
        return Path(env.get(PVC_MOUNT_ENV, DEFAULT_PVC_MOUNT)) / sub
    if uri.startswith(_FILE_PREFIX):
        return Path(uri[len(_FILE_PREFIX):])
    if "://" not in uri:
        return Path(uri)
    return None


def s3_endpoint_from_kserve_env(env: dict[str, str]) -> str | None:
    """KServe's S3_ENDPOINT/S3_USE_HTTPS, as its storage initializer turns them into AWS_ENDPOINT_URL."""
    if env.get("AWS_ENDPOINT_URL") or not env.get("S3_ENDPOINT"):
        return None
    endpoint = env["S3_ENDPOINT"]
    if "://" in endpoint:
        return endpoint
    scheme = "http" if env.get("S3_USE_HTTPS", "1").strip().lower() in ("0", "false") else "https"
    return f"{scheme}://{endpoint}"


def unpacked_size(path: Path, is_zip: bool, max_bytes: int | None = None) -> int:
    """Bytes an archive expands to, after checking its entries (StartupError: escaping, too many, a bomb,
    or over ``max_bytes``)."""
    if is_zip:
        with check_zip(path, max_bytes) as zf:
            return sum(info.file_size for info in zf.infolist())
    return check_tar(path, max_bytes)


@contextlib.contextmanager
def safe_unpacking(max_bytes: int) -> Iterator[None]:
    """Make kserve_storage check every archive (escaping entries, size cap) before it unpacks it.

    kserve_storage unpacks in the same call that downloads, so the check goes into its
    unpack step; everything else about its download stays as it is.
    """
    from kserve_storage import Storage

    original = Storage.__dict__["_unpack_archive_file"]
    unpack: Callable[..., str] = original.__func__

    def checked(file_path: str, mimetype: str, target_dir: str | None = None) -> str:
        try:
            unpacked_size(Path(file_path), mimetype == "application/zip", max_bytes)
        except StartupError as exc:  # fetch() names the URI; where the download landed is no business of a client
            raise StartupError(str(exc).removeprefix(f"{file_path}: ")) from None
        return unpack(file_path, mimetype, target_dir)

    Storage._unpack_archive_file = staticmethod(checked)
    try:
        yield
    finally:
        Storage._unpack_archive_file = original


@contextlib.contextmanager
def redirects_checked(policy: UrlPolicy | None) -> Iterator[None]:
    """Check every HTTP redirect target against ``policy`` before requests follows it.

    kserve_storage (and our size probe) let requests follow redirects on their own; a URL
    allowed at the door must not be able to send the download somewhere that is not.
    """
    if policy is None:
        yield
        return
    from requests.sessions import SessionRedirectMixin

    original = SessionRedirectMixin.get_redirect_target

    def checked(self: Any, response: Any) -> str | None:
        target: str | None = original(self, response)
        if target is not None:
            try:
                policy.check(urljoin(response.url, target))
            except ManagementError as exc:
                raise StartupError(f"the server redirected to a URL that is not allowed ({exc.message})") from None
        return target

    SessionRedirectMixin.get_redirect_target = checked  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        SessionRedirectMixin.get_redirect_target = original  # type: ignore[method-assign]


class _Progress:
    """Logs bytes on disk under a directory every few seconds while a download runs."""

    def __init__(self, uri: str, directory: Path, total: int | None, interval_s: float) -> None:
        self._uri, self._directory, self._total, self._interval = uri, directory, total, interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._directory.rglob("*") if p.is_file() and not p.is_symlink())

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            done = self.size()
            if self._total:
                logger.info("downloading %s: %s of %s (%.0f%%)", self._uri, _mib(done), _mib(self._total),
                            100 * done / self._total)
            else:
                logger.info("downloading %s: %s so far", self._uri, _mib(done))

    def __enter__(self) -> "_Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def remote_total(uri: str) -> int | None:
    """Total bytes behind a URI when one cheap request tells (HTTP HEAD, S3 listing); else None."""
    try:
        if uri.startswith(("http://", "https://")) and ".blob.core.windows.net" not in uri:
            import requests

            response = requests.head(uri, allow_redirects=True, timeout=5)
            length = response.headers.get("Content-Length")
            return int(length) if response.ok and length else None
        if uri.startswith("s3://"):
            import boto3
            from kserve_storage import Storage

            bucket, _, prefix = uri[len("s3://"):].partition("/")
            client = boto3.client("s3", **Storage._get_s3_client_kwargs())
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return int(sum(obj["Size"] for page in pages for obj in page.get("Contents", [])))
    except Exception:  # the total is a nicety; the download itself reports real errors
        return None
    return None


def _is_storage_archive(path: Path) -> bool:
    """A local archive of a model directory (not a TorchServe .tar.gz model, which has a manifest)."""
    if not path.is_file() or not path.name.endswith(_ARCHIVE_SUFFIXES):
        return False
    if path.name.endswith(".zip"):
        with check_zip(path) as zf:
            return MANIFEST not in zf.namelist()
    check_tar(path)
    with tarfile.open(path) as tf:
        return not any(name.endswith(MANIFEST) for name in tf.getnames())


def fetch(
    uri: str,
    download_dir: Path,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    progress_interval_s: float = PROGRESS_INTERVAL_S,
    policy: UrlPolicy | None = None,
) -> Path:
    """Make ``uri`` available locally; StartupError names the URI and the cause.

    ``policy``: for URLs a client sent (run-time registration), every redirect must pass it too.
    """
    shown = redact(uri)
    try:
        with redirects_checked(policy):
            return _fetch(uri, shown, download_dir, max_unpacked_bytes, progress_interval_s)
    except StartupError as exc:
        local = local_path(uri)
        cause = str(exc).removeprefix(f"{local}: ") if local is not None else str(exc)  # said once is enough
        raise StartupError(_one_line(f"storage URI {shown}: {cause}").replace(uri, shown)) from None


def _fetch(uri: str, shown: str, download_dir: Path, max_unpacked_bytes: int, interval_s: float) -> Path:
    local = local_path(uri)
    if local is not None:
        if not local.exists():
            raise StartupError(f"{local} does not exist")
        if _is_storage_archive(local):
            return _download(str(local), shown, download_dir, max_unpacked_bytes, interval_s)
        logger.info("using model at %s in place", local)
        return local
    endpoint = s3_endpoint_from_kserve_env(dict(os.environ))
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint  # kserve_storage reads its settings from the environment
    return _download(uri, shown, download_dir, max_unpacked_bytes, interval_s)


_HINTS = (
    (("403", "Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "401", "Unauthorized"),
     "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, "
     "AZURE_STORAGE_ACCESS_KEY or a SAS token) and that they may read this path"),
    (("No model found", "Failed to fetch model"), "the path is empty: check the bucket prefix"),
    (("not found", "404", "NoSuchBucket", "NoSuchKey", "does not exist"), "check the bucket/container and path"),
    (("Cannot recognize storage type",), "use a supported scheme"),
)


def _hint(cause: str) -> str:
    for needles, hint in _HINTS:
        if any(needle in cause for needle in needles):
            return f" ({hint})"
    return ""


def _download(uri: str, shown: str, download_dir: Path, max_bytes: int, interval_s: float) -> Path:
    """kserve_storage's download (a local archive: linked, then unpacked) with checks and progress."""
    from kserve_storage import Storage

    download_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    total = remote_total(uri)
    try:
        with safe_unpacking(max_bytes), _Progress(shown, download_dir, total, interval_s) as progress:
            result = Path(Storage.download(uri, out_dir=str(download_dir)))
            size = progress.size()
    except StartupError:
        raise
    except Exception as exc:  # kserve_storage raises bare Exception/RuntimeError/client errors for every cause
        raise StartupError(f"download failed: {type(exc).__name__}: {exc}{_hint(str(exc))}") from None
    if result.is_dir() and not any(result.iterdir()):
        raise StartupError("nothing was downloaded: the bucket prefix or path is empty")
    logger.info("downloaded %s: %s in %.1fs", shown, _mib(size), time.monotonic() - started)
    return result
