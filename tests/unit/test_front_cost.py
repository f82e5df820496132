"""benchmarks/front_cost.py keeps measuring what it says: real answers through our whole HTTP stack.

Figures are never asserted (they are the benchmark's to print); only that every request was
answered 200 by the real path and every v2 stage was timed.
"""

from __future__ import annotations

import asyncio

from benchmarks import front_cost


def test_front_cost_runs_both_apis_through_every_v2_stage() -> None:
    result = asyncio.run(front_cost.measure(floats=16, requests=40, rounds=1))
    assert set(result["cpu_us_per_request"]) == {"v1", "v2"}
    assert all(us > 0 for us in result["cpu_us_per_request"].values())
    assert set(result["v2_stages_us"]) == {name for _, name in front_cost.STAGES}
    # The stages were put back: the codec is the module's own function again.
    assert front_cost.codec.v2_rows.__module__ == "kserve_torchserve.serving.codec"
    assert front_cost.codec.v2_rows.__name__ == "v2_rows"
