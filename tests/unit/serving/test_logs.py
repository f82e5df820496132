from __future__ import annotations

import asyncio
import logging

import pytest

from kserve_torchserve.serving import logs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _folding(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> tuple[logs.FoldingLog, Clock]:
    log = logging.getLogger("test.folding")
    log.setLevel(level)
    caplog.set_level(level, logger="test.folding")
    clock = Clock()
    return logs.FoldingLog(log, window_s=10, clock=clock), clock


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.folding"]


def test_the_same_line_is_written_once_per_window_then_summed_up(caplog: pytest.LogCaptureFixture) -> None:
    folding, clock = _folding(caplog)
    for i in range(5):
        folding.emit(logging.WARNING, "model m not ready", f"model m not ready (request id {i})")
    folding.emit(logging.WARNING, "another")
    assert _lines(caplog) == ["model m not ready (request id 0)", "another"]
    clock.now += 10
    folding.emit(logging.WARNING, "model m not ready", "model m not ready (request id 9)")
    assert _lines(caplog)[2:] == ["4 more like this in the last 10 s: model m not ready",
                                  "model m not ready (request id 9)"]


async def test_the_summary_comes_even_when_the_storm_stops(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.folding")
    caplog.set_level(logging.INFO, logger="test.folding")
    folding = logs.FoldingLog(log, window_s=0.05)
    for _ in range(3):
        folding.emit(logging.WARNING, "503: TorchServe restarting")
    await asyncio.sleep(0.2)
    assert _lines(caplog) == ["503: TorchServe restarting", "2 more like this in the last 0 s: 503: TorchServe restarting"]
    folding.emit(logging.WARNING, "503: TorchServe restarting")  # a new window: written again
    assert len(_lines(caplog)) == 3


def test_at_debug_every_line_is_written(caplog: pytest.LogCaptureFixture) -> None:
    folding, _ = _folding(caplog, logging.DEBUG)
    for _ in range(3):
        folding.emit(logging.INFO, "same")
    assert _lines(caplog) == ["same"] * 3


def test_memory_stays_bounded_by_distinct_lines(caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_KEYS", 3)
    folding, clock = _folding(caplog)
    for i in range(10):  # past the bound, lines are written unfolded rather than remembered
        folding.emit(logging.INFO, f"line {i}")
        folding.emit(logging.INFO, f"line {i}")
    assert len(folding._seen) == 3
    assert len(_lines(caplog)) == 3 + 7 * 2


def test_a_clients_text_cannot_forge_lines_or_flood_one() -> None:
    assert logs.clean("POST /v1\r\nERROR forged") == "POST /v1??ERROR forged"
    assert logs.clean("x" * 1000, 10) == "x" * 10 + "..."


def test_client_errors_are_info_server_errors_warning_bugs_error_with_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kserve_torchserve")
    logs.FOLDED.forget()
    try:
        raise RuntimeError("bug")
    except RuntimeError as exc:
        bug = exc
    logs.request_failed(400, "POST /v2/models/m/infer", "r-1", "input 'x' has shape [-1]", exc=ValueError("v"))
    logs.request_failed(503, "POST /v1/models/m:predict", None, "model m is not ready")
    logs.request_failed(500, "GET /broken", None, "internal error (RuntimeError)", exc=bug, unexpected=True)
    records = [r for r in caplog.records if r.name == "kserve_torchserve.serving.logs"]
    assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in records] == [
        ("INFO", "request failed: 400 POST /v2/models/m/infer (request id r-1): input 'x' has shape [-1]", False),
        ("WARNING", "request failed: 503 POST /v1/models/m:predict: model m is not ready", False),
        ("ERROR", "request failed: 500 GET /broken: internal error (RuntimeError)", True),
    ]


def test_a_client_errors_traceback_shows_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kserve_torchserve")
    logs.FOLDED.forget()
    logs.request_failed(400, "POST /x", None, "bad", exc=ValueError("why"))
    (record,) = [r for r in caplog.records if r.name == "kserve_torchserve.serving.logs"]
    assert record.exc_info is not None
