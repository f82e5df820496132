"""benchmarks/run.py's measure(): a point's CPU is counted over its window only, and a barrier runs
between the load's warm-up and its window, and after the window.

Why: wrk's 1-s warm-up ends with every connection's request still queued in TorchServe; without
the barrier inside measure(), a compute-bound model's window started behind that backlog (W2 REST
at c=64 read 7-11 req/s for every system). Figures are never asserted, only what is counted when.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import load
from benchmarks.run import ALL_PARTS, add_tag_option, cpu_model, measure, results_stem


class _Clock:
    """Stands in for Processes: each process group's CPU is the events so far, so a snapshot says when it was taken."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def snapshot(self) -> dict[str, float]:
        self.events.append("snapshot")
        return {"ours": float(len(self.events))}


def _load(clock: _Clock) -> dict[str, Any]:
    clock.events.append("warm-up")
    load._window_starts()  # what wrk() and the gRPC loops call once their warm-up is done
    clock.events.append("window")
    return {"requests": 2}


def test_the_barrier_runs_after_the_warm_up_before_the_window_is_counted_and_after_it() -> None:
    clock = _Clock()
    result = measure(lambda: _load(clock), clock, lambda: clock.events.append("settle"))  # type: ignore[arg-type]
    assert clock.events == ["snapshot", "warm-up", "settle", "snapshot", "window", "snapshot", "settle"]
    # Counted from the snapshot after the barrier (event 4) to the one after the window (event 6).
    assert result["cpu_ms_per_request"] == {"ours": 1000.0 * (6 - 4) / 2}


def test_without_a_barrier_the_window_is_still_counted_from_the_end_of_the_warm_up() -> None:
    clock = _Clock()
    result = measure(lambda: _load(clock), clock)  # type: ignore[arg-type]
    assert clock.events == ["snapshot", "warm-up", "snapshot", "window", "snapshot"]
    assert result["cpu_ms_per_request"] == {"ours": 1000.0 * (5 - 3) / 2}


def test_a_nested_measure_settles_before_the_outer_window_opens_too() -> None:
    clock = _Clock()
    with load.on_measured_window(lambda: clock.events.append("outer snapshot")):
        measure(lambda: _load(clock), clock, lambda: clock.events.append("settle"))  # type: ignore[arg-type]
    assert clock.events[:5] == ["snapshot", "warm-up", "settle", "snapshot", "outer snapshot"]


def test_a_closed_loop_rates_its_calls_over_the_time_they_took_not_the_nominal_window() -> None:
    """Calls started before the window's end finish after it (at W2, c=64: seconds later); dividing
    by the nominal window overstated gRPC's req/s by half there."""
    import asyncio

    async def call() -> None:
        await asyncio.sleep(0.2)

    # Each of 2 workers starts one call at once, inside the 0.1-s window: 2 calls, done at >= 0.2 s.
    result = asyncio.run(load._closed_loop(call, concurrency=2, seconds=0.1))
    assert result["requests"] == 2
    assert result["seconds"] >= 0.2
    assert abs(result["rps"] - result["requests"] / result["seconds"]) < 0.01 * result["rps"]  # seconds is rounded


def test_rounds_interleave_the_systems_and_keep_each_ones_median_round() -> None:
    """run.interleaved, the one rounds loop of every benchmark: systems in turn, round after round, each
    round starting one system later, and per system and level the median round by req/s with every
    round's req/s beside it."""
    from benchmarks.run import interleaved

    calls: list[tuple[str, int]] = []
    rates = {"a": [30.0, 10.0, 20.0], "b": [5.0, 7.0, 6.0]}

    def point(system: str, level: int) -> dict[str, Any]:
        calls.append((system, level))
        return {"rps": rates[system][sum(1 for s, lv in calls if s == system and lv == level) - 1], "errors": 0}

    results = interleaved([1, 4], 3, ["a", "b"], point, "W0")
    assert calls == [("a", 1), ("b", 1), ("b", 1), ("a", 1), ("a", 1), ("b", 1),
                     ("a", 4), ("b", 4), ("b", 4), ("a", 4), ("a", 4), ("b", 4)]
    assert results["a"][1]["rps"] == 20.0 and results["a"][1]["rounds_rps"] == [30.0, 10.0, 20.0]
    assert results["b"][4]["rps"] == 6.0 and results["b"][4]["rounds_rps"] == [5.0, 7.0, 6.0]


def test_results_name_the_processor_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"


def test_without_a_model_name_the_processor_is_still_named(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n")  # an arm64 host's
    for path in (cpuinfo, tmp_path / "missing"):
        assert cpu_model(path) == (platform.processor() or platform.machine() or "unknown")


def test_results_are_named_by_date_parts_and_tag_so_a_second_run_does_not_overwrite_the_first() -> None:
    day = datetime.date(2026, 11, 28)
    assert results_stem(day, set(ALL_PARTS)) == "2026-11-28"
    assert results_stem(day, {"sweep"}) == "2026-11-28-sweep"
    assert results_stem(day, {"sizes", "batching"}, "ninth-pass") == "2026-11-28-batching-sizes-ninth-pass"
    for bad in ("../x", "a/b", "-x", "a b"):
        with pytest.raises(ValueError):
            results_stem(day, {"sweep"}, bad)


def test_every_script_that_writes_results_takes_a_checked_tag() -> None:
    parser = argparse.ArgumentParser()
    add_tag_option(parser)
    assert parser.parse_args([]).tag == "" and parser.parse_args(["--tag", "tenth-pass"]).tag == "-tenth-pass"
    for bad in ("../x", "a/b", "-x", "a b"):
        with pytest.raises(SystemExit):  # argparse's refusal, before anything is measured
            parser.parse_args([f"--tag={bad}"])
    # Each script that names a results file (run.py checks its own --tag): the shared option, or floor_parser's.
    scripts = Path(__file__).resolve().parents[2] / "benchmarks"
    writers = {path.name for path in scripts.glob("*.py")
               if "write_report(" in path.read_text() or "today()" in path.read_text()}
    untagged = {name for name in writers - {"run.py"}
                if not re.search(r"add_tag_option\(parser\)|floor_parser\(", (scripts / name).read_text())}
    assert len(writers) >= 9 and untagged == set()
