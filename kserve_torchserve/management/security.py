"""Who may change what is served, which names are allowed, and which URLs may be fetched.

Register-by-URL is the most attacked part of TorchServe (ShellTorch, CVE-2023-43654:
SSRF and code execution through ``POST /models?url=``; CVE-2024-35198: ``..`` checked
only after the download). So every check here runs before a single byte is fetched:

- the switch (``TS_ENABLE_MODEL_API``) and the bearer key, compared in constant time;
- names and versions: ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``, so they are safe as file
  names, URL path segments and multipart part names;
- a URL must pass the allow-list (``model_store/url_policy.py``, below us because the
  download child checks every redirect with it too).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from ..config.model_api import ModelApiOptions
from ..errors import ManagementError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Route words that cannot be version names: /models/{m}/all and /models/{m}/traffic are routes.
RESERVED_VERSIONS = frozenset({"all", "traffic"})


def check_name(value: str, what: str = "model_name") -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ManagementError(400, f"{what} must be 1-64 characters of letters, digits, '_', '.' or '-', "
                                   "starting with a letter or digit")
    if ".." in value:
        raise ManagementError(400, f"{what} must not contain '..'")
    return value


def check_version(value: str) -> str:
    check_name(value, "model_version")
    if value in RESERVED_VERSIONS:
        raise ManagementError(400, f"model_version may not be {value!r}: it is a route of the management API")
    return value


@dataclass(frozen=True)
class Gate:
    """The switch and the key in front of every /models write."""

    options: ModelApiOptions

    def check(self, authorization: str | None) -> None:
        if not self.options.enabled:
            raise ManagementError(403, "the model management API is off: start the server with "
                                       "TS_ENABLE_MODEL_API=true (or --enable_model_api) and a key")
        sent = (authorization or "").strip()
        scheme, _, token = sent.partition(" ")
        expected = self.options.key or ""
        # compare_digest on equal-length bytes: the time taken says nothing about the key.
        if scheme.lower() != "bearer" or not expected or not hmac.compare_digest(
            token.strip().encode("utf-8"), expected.encode("utf-8")
        ):
            raise ManagementError(401, "missing or wrong key: send Authorization: Bearer <TS_MODEL_API_KEY>")
