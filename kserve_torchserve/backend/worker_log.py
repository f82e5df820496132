"""Why a model's workers could not load, read from TorchServe's log lines as they pass.

TorchServe answers a registration whose workers fail with "Failed to start workers for
model m version: v" and nothing more; the cause is in the worker's own lines, which the
frontend logs under the worker's thread name (``W-<port>-<model>_<version>-stdout``):

    ... W-9001-broken_1.0-stdout MODEL_LOG - Failed to load model broken, exception cannot load: ...
    ... W-9001-broken_1.0-stdout MODEL_LOG - RuntimeError: cannot load: ...

The first is TorchServe's worker (ts/model_service_worker.py) catching the handler's
error; an error it does not catch (an ImportError in the handler module) leaves only the
traceback, whose last ``SomethingError: message`` line is then the reason.
"""

from __future__ import annotations

import asyncio
import re

_WORKER_LINE = re.compile(r"W-\d+-(?P<worker>\S+)-std(?:out|err) MODEL_LOG - (?P<text>.*)$")
_LOAD_FAILED = re.compile(r"(?:Failed to load model \S+, exception |Load model \S+ c[pu]+ OOM, exception )(?P<why>.*)$")
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception)): (?P<why>.+)$")
# TorchServe's worker re-raises a load failure as "RuntimeError: 500 - Unknown exception": not the cause.
_RERAISED = re.compile(r"^RuntimeError: \d{3} - ")
_MAX_MODELS = 1024
# TorchServe's answer to a registration can overtake the worker's last lines on their way to
# ``feed`` (worker stdout -> Java's reader -> log4j -> Java's stdout -> our pipe reader).
REASON_WAIT_S = 5.0


class LoadFailures:
    """``feed`` every TorchServe line; ``reason(model, version)``: why its workers last failed to load."""

    def __init__(self) -> None:
        self._stated: dict[str, str] = {}  # worker model key -> TorchServe's "Failed to load model" words
        self._raised: dict[str, str] = {}  # worker model key -> the last exception line
        self._fresh: set[str] = set()  # keys whose current attempt has said nothing yet

    def feed(self, line: str) -> None:
        match = _WORKER_LINE.search(line)
        if match is None:
            return
        key, text = match["worker"], match["text"].strip()
        if text.startswith("Torch worker started."):
            # A new attempt: its own words will replace the last attempt's, which stand until then.
            # (Forgetting them here lost the reason when TorchServe's retry started between its
            # failed answer and our reading of the reason: the CI run of 9b2c467.)
            if len(self._fresh) >= _MAX_MODELS:  # bounded; a cleared mark only lets a stale reason stand longer
                self._fresh.clear()
            self._fresh.add(key)
            return
        stated = _LOAD_FAILED.match(text)
        raised = _EXCEPTION.match(text) if stated is None and not _RERAISED.match(text) else None
        if stated is None and raised is None:
            return
        if key in self._fresh:  # the new attempt's first words: the last attempt's are stale now
            self._fresh.discard(key)
            self._stated.pop(key, None)
            self._raised.pop(key, None)
        if stated is not None:
            self._remember(self._stated, key, stated["why"].strip())
        else:
            self._remember(self._raised, key, text)

    @staticmethod
    def _remember(table: dict[str, str], key: str, why: str) -> None:
        if key not in table and len(table) >= _MAX_MODELS:
            table.pop(next(iter(table)))  # bounded: a server registering endless versions must not grow this
        table[key] = why[:500]

    def reason(self, model: str, version: str) -> str | None:
        key = f"{model}_{version}"
        return self._stated.get(key) or self._raised.get(key)

    async def wait_reason(self, model: str, version: str) -> str | None:
        """``reason``, once TorchServe has said its workers failed: waited for up to REASON_WAIT_S,
        polled, since the lines may still be on their way (a clean-clone CI run of 01f97c3 got the
        answer without them). None: the log never gave one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REASON_WAIT_S
        reason = self.reason(model, version)
        while reason is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
            reason = self.reason(model, version)
        return reason
