"""Why a model's workers could not load, from TorchServe 0.12's log lines (as written there)."""

from __future__ import annotations

import asyncio

import pytest

from kserve_torchserve.backend import worker_log
from kserve_torchserve.backend.worker_log import LoadFailures

_W = "[INFO ] W-9001-broken_1.0-stdout MODEL_LOG - "


def test_torchserves_own_words_name_the_cause() -> None:
    failures = LoadFailures()
    for text in ("Torch worker started.", "Failed to load model broken, exception cannot load: weights missing",
                 "Traceback (most recent call last):", "RuntimeError: cannot load: weights missing",
                 "Backend worker process died.", "RuntimeError: 500 - Unknown exception"):
        failures.feed(_W + text)
    assert failures.reason("broken", "1.0") == "cannot load: weights missing"
    assert failures.reason("other", "1.0") is None


def test_an_uncaught_error_is_the_last_exception_line() -> None:
    failures = LoadFailures()
    for text in ("Torch worker started.", "Traceback (most recent call last):",
                 "ModuleNotFoundError: No module named 'transformers'", "RuntimeError: 500 - Unknown exception"):
        failures.feed(_W + text)
    assert failures.reason("broken", "1.0") == "ModuleNotFoundError: No module named 'transformers'"


def test_a_new_attempt_replaces_the_old_ones_reason_once_it_gives_one_and_other_lines_are_ignored() -> None:
    """TorchServe retries a failed worker at once: its new attempt may start between TorchServe's failed
    answer and our reading of the reason, which must then still be the last attempt's."""
    failures = LoadFailures()
    failures.feed(_W + "Failed to load model broken, exception first")
    failures.feed(_W + "Torch worker started.")
    failures.feed("[INFO ] main ModelServer - RuntimeError: not a worker line")
    assert failures.reason("broken", "1.0") == "first"  # the new attempt has said nothing yet
    failures.feed(_W + "Traceback (most recent call last):")
    failures.feed(_W + "ValueError: second")
    assert failures.reason("broken", "1.0") == "ValueError: second"  # the old attempt's words are gone


async def test_a_reason_still_on_its_way_is_waited_for_and_a_missing_one_is_none_after_the_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """TorchServe's "Failed to start workers" can reach us before the worker's lines do."""
    failures = LoadFailures()
    asyncio.get_running_loop().call_later(0.2, failures.feed, _W + "Failed to load model broken, exception late")
    assert await asyncio.wait_for(failures.wait_reason("broken", "1.0"), 5) == "late"
    monkeypatch.setattr(worker_log, "REASON_WAIT_S", 0.2)
    assert await asyncio.wait_for(failures.wait_reason("other", "1.0"), 5) is None
