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


def test_protocol_cost_answers_every_request_200_through_each_protocol() -> None:
    import uvloop

    from benchmarks import protocol_cost
    from kserve_torchserve.serving import hot_route

    result = uvloop.run(protocol_cost.measure(requests=40, rounds=1))  # cpu_us raises on any answer but 200
    assert set(result["cpu_us_per_request"]) == {"hot", "asgi", "uvicorn-bare", "bare"}
    assert all(us > 0 for us in result["cpu_us_per_request"].values())
    # "hot" is the server's protocol with the hot route, and its requests really take it.
    taken: list[object] = []
    original = hot_route.HotCycle.__init__

    def counted(self: hot_route.HotCycle, *args: object, **kwargs: object) -> None:
        taken.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    hot_route.HotCycle.__init__ = counted  # type: ignore[method-assign]
    try:
        uvloop.run(protocol_cost.measure(requests=4, rounds=1))
    finally:
        hot_route.HotCycle.__init__ = original  # type: ignore[method-assign]
    assert taken
