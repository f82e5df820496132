"""Which URLs may be fetched: checked before a single byte is, and again for every redirect.

A URL is normalised (scheme and host lower-cased, no user-info, no ``..`` segment, no
percent-encoded dot, slash, backslash or NUL, no control characters or spaces) and must
fully match one of the allow-list's regular expressions (``TS_ALLOWED_URLS``); a local
path must match both as written and after resolving symlinks, so a link cannot lead out
of the allowed tree. Refusals are ManagementError: 400 for a URL no list may allow,
403 for one this list does not.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from ..errors import ManagementError

SCHEMES = ("file", "pvc", "s3", "gs", "http", "https")
_ENCODED_TRAVERSAL = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")


def normalise_url(url: str) -> str:
    """The form allow-list patterns are matched against; ManagementError(400) for a URL no pattern may see."""
    if not url or len(url) > 2048 or _CONTROL.search(url):
        raise ManagementError(400, "url is empty, too long or holds spaces or control characters")
    if _ENCODED_TRAVERSAL.search(url):
        raise ManagementError(400, "url holds a percent-encoded '.', '/', '\\' or NUL: send it decoded")
    if "://" not in url:  # a local path
        if not url.startswith("/"):
            raise ManagementError(400, "url must be an absolute path, a storage URI (s3://, gs://, https://, ...) "
                                       "or the file name of an archive in the model store")
        path = url
        normal = path
    else:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ManagementError(400, f"url scheme {scheme!r} is not supported: use one of {', '.join(SCHEMES)}")
        if "@" in parts.netloc:
            raise ManagementError(400, "url must not carry user information (user:password@): use the storage "
                                       "credentials of the server instead")
        path = parts.path
        normal = f"{scheme}://{parts.netloc.lower()}{path}"
    if ".." in path.split("/") or "\\" in path:
        raise ManagementError(400, "url must not contain '..' segments or backslashes")
    return normal


class UrlPolicy:
    """The allow-list, checked before anything is fetched."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._patterns = tuple(re.compile(p) for p in patterns)

    def allows(self, normal: str) -> bool:
        return any(p.fullmatch(normal) for p in self._patterns)

    def check(self, url: str) -> str:
        """The normalised URL; ManagementError(400) if malformed, (403) if no pattern allows it."""
        normal = normalise_url(url)
        candidates = [normal]
        local = normal[len("file://"):] if normal.startswith("file://") else normal if "://" not in normal else None
        if local is not None:
            candidates.append(os.path.realpath(local))  # a symlink must not lead out of the allowed tree
        if not all(self.allows(c) or (c != normal and self.allows("file://" + c)) for c in candidates):
            raise ManagementError(403, "url is not allowed: it must match TS_ALLOWED_URLS (default: the "
                                       "--storage_uri location)")
        return normal
