"""fetch.fetch in a child interpreter, and that child's command line.

``python -m kserve_torchserve.model_store.fetch_child URI DIR --result FILE`` downloads like
fetch.fetch and writes ``{"path": ...}`` or ``{"error": ...}`` to FILE. Its log lines
(ours and kserve_storage's warnings) go to stdout with the URI redacted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import StartupError
from .fetch import DEFAULT_MAX_UNPACKED_BYTES, fetch, logger, redact
from .url_policy import UrlPolicy

# This module's import name, also when it runs as __main__ (-m): what the child is started as.
_MODULE = __spec__.name if __spec__ is not None else __name__


async def fetch_in_child(
    uri: str, download_dir: Path, max_unpacked_bytes: int, log_level: str, allowed_urls: tuple[str, ...] | None = None
) -> Path:
    """fetch() in a fresh interpreter.

    kserve_storage downloads S3 objects with a fork()ed multiprocessing pool, and a
    fork() of a process that already runs gRPC and event-loop threads can deadlock
    (seen here: the download hung). A child started from scratch has no such threads;
    its log lines go to our stdout, its result comes back in a small JSON file.
    """
    import asyncio
    import json
    import sys

    download_dir.mkdir(parents=True, exist_ok=True)
    result_file = download_dir.parent / "storage-result.json"
    result_file.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", _MODULE, uri, str(download_dir),
        "--max-unpacked-bytes", str(max_unpacked_bytes), "--result", str(result_file), "--log-level", log_level,
        *(arg for pattern in allowed_urls or () for arg in ("--allowed-url", pattern)),
    )
    try:
        code = await proc.wait()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError):
        raise StartupError(f"storage URI {redact(uri)}: the download process failed (exit code {code})") from None
    if "error" in result:
        raise StartupError(result["error"])
    return Path(result["path"])


class _Redacting(logging.Filter):
    """Replaces the URI (which may carry credentials or a SAS token) with its redacted form."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._uri, self._shown = uri, redact(uri)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._uri != self._shown and self._uri in message:
            record.msg, record.args = message.replace(self._uri, self._shown), ()
        return True


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=fetch.__doc__)
    parser.add_argument("uri")
    parser.add_argument("download_dir", type=Path)
    parser.add_argument("--max-unpacked-bytes", type=int, default=DEFAULT_MAX_UNPACKED_BYTES)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--allowed-url", action="append", default=None,
                        help="a regular expression every redirect target must match (repeatable)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redacting(args.uri))
    logger.addHandler(handler)
    logger.setLevel({"TRACE": "DEBUG", "WARN": "WARNING"}.get(args.log_level, args.log_level))
    logger.propagate = False
    # kserve_storage's own lines: warnings and errors only, and never with credentials.
    library = logging.getLogger("storage.initializer")
    library.handlers[:] = [handler]
    library.setLevel(logging.WARNING)
    library.propagate = False
    try:
        policy = UrlPolicy(tuple(args.allowed_url)) if args.allowed_url else None
        path = fetch(args.uri, args.download_dir, args.max_unpacked_bytes, policy=policy)
        result: dict[str, str] = {"path": str(path)}
    except StartupError as exc:
        result = {"error": str(exc)}
    args.result.write_text(json.dumps(result))
    return 0 if "path" in result else 1


if __name__ == "__main__":
    raise SystemExit(main())
