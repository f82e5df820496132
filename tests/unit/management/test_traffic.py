"""Which version answers: distribution, stickiness and override order, with a seeded random source."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kserve_torchserve.errors import ManagementError
from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.management.traffic import (
    RolledBack, Split, choose, shadows, startup_splits, sticky_point, with_rollback,
)

VERSIONS = {"1.0", "2.0", "3.0"}


def split(body: object) -> Split:
    return Split.parse(body, VERSIONS)


def test_weights_are_followed() -> None:
    draw = random.Random(7).random
    s = split({"weights": {"1.0": 80, "2.0": 20}})
    counts = Counter(choose(s, "1.0", {}, None, draw) for _ in range(20000))
    assert set(counts) == {"1.0", "2.0"}
    assert abs(counts["1.0"] / 20000 - 0.8) < 0.01


@pytest.mark.parametrize("weights,only", [({"1.0": 100, "2.0": 0}, "1.0"), ({"1.0": 0, "2.0": 100}, "2.0")])
def test_all_or_nothing_is_exact(weights: dict[str, int], only: str) -> None:
    draw = random.Random(1).random
    assert {choose(split(weights), "1.0", {}, None, draw) for _ in range(5000)} == {only}


def test_the_short_form_is_the_weights() -> None:
    assert split({"1.0": 60, "2.0": 40}).weights == {"1.0": 60, "2.0": 40}


def test_sticky_values_keep_their_version_and_spread_like_the_weights() -> None:
    s = split({"weights": {"1.0": 80, "2.0": 20}, "sticky_header": "X-Session-Id"})
    assert s.sticky_header == "x-session-id"
    draws = [random.Random(seed).random for seed in range(3)]
    placed = {}
    for key in range(1000):
        seen = {choose(s, "1.0", {"x-session-id": f"user-{key}"}, None, draw) for draw in draws}
        assert len(seen) == 1  # whatever the random source says
        placed[key] = seen.pop()
    share = sum(1 for v in placed.values() if v == "1.0") / len(placed)
    assert 0.75 < share < 0.85
    # without the header: split by weight
    draw = random.Random(3).random
    assert {choose(s, "1.0", {}, None, draw) for _ in range(200)} == {"1.0", "2.0"}


def test_sticky_point_depends_on_the_value_only() -> None:
    assert sticky_point("abc") == sticky_point("abc") != sticky_point("abd")
    assert all(0 <= sticky_point(str(i)) < 100 for i in range(1000))


def test_override_order_explicit_then_sticky_then_weights_then_default() -> None:
    s = split({"weights": {"1.0": 50, "2.0": 50}, "sticky_header": "x-session-id"})
    sticky = {"x-session-id": "user-1"}
    placed = choose(s, "3.0", sticky, None)
    other = "1.0" if placed == "2.0" else "2.0"
    assert choose(s, "3.0", sticky, other) == other  # an explicit version beats stickiness
    assert choose(None, "3.0", sticky, None) == "3.0"  # no split: the default
    assert choose(None, "3.0", {}, "1.0") == "1.0"


def test_a_rolled_back_canary_gets_nothing_and_its_share_goes_to_the_others() -> None:
    s = with_rollback(split({"weights": {"1.0": 60, "2.0": 20, "3.0": 20}}), RolledBack("3.0", 0.5, 0.0))
    assert s.effective() == {"1.0": 75.0, "2.0": 25.0}
    draw = random.Random(2).random
    counts = Counter(choose(s, "1.0", {}, None, draw) for _ in range(20000))
    assert "3.0" not in counts and abs(counts["1.0"] / 20000 - 0.75) < 0.01
    everything = with_rollback(split({"weights": {"1.0": 0, "2.0": 100}}), RolledBack("2.0", 1.0, 0.0))
    assert choose(everything, "2.0", {}, None) == "1.0"


def test_shadows_are_drawn_apart_and_never_the_answering_version() -> None:
    s = split({"weights": {"1.0": 100}, "shadow": {"2.0": 30, "1.0": 100}})
    draw = random.Random(5).random
    copies = Counter(v for _ in range(10000) for v in shadows(s, "1.0", draw))
    assert set(copies) == {"2.0"} and abs(copies["2.0"] / 10000 - 0.3) < 0.02
    assert shadows(None, "1.0") == [] and shadows(split({"1.0": 100}), "1.0") == []


@pytest.mark.parametrize("body,fragment", [
    ({"weights": {"1.0": 80, "9.9": 20}}, "'9.9' is not served"),
    ({"weights": {"1.0": 120, "2.0": -20}}, "expected an integer 0-100"),
    ({"weights": {"1.0": 80, "2.0": 10}}, "sum to 90"),
    ({"weights": {"1.0": 80.0, "2.0": 20}}, "expected an integer"),
    ({"weights": {"1.0": True, "2.0": 99}}, "expected an integer"),
    ({"weights": {}}, "weights must be an object"),
    ([80, 20], "must be an object"),
    ({"weights": {"1.0": 100}, "extra": 1}, "unknown traffic fields ['extra']"),
    ({"weights": {"1.0": 100}, "shadow": {"2.0": 101}}, "shadow: version 2.0"),
    ({"weights": {"1.0": 100}, "sticky_header": "bad header!"}, "sticky_header"),
    ({"weights": {"1.0": 100}, "guard": {"version": "2.0", "max_error_rate": 0.1}}, "guard.version"),
    ({"weights": {"1.0": 100}, "guard": {"version": "1.0", "max_error_rate": 1.5}}, "max_error_rate"),
    ({"weights": {"1.0": 100}, "guard": {"version": "1.0", "max_error_rate": 0.1, "min_requests": 0}},
     "min_requests"),
    ({"weights": {"1.0": 100}, "guard": {"version": "1.0", "max_error_rate": 0.1, "window_s": -1}}, "window_s"),
])
def test_bad_splits_are_400_naming_the_problem(body: object, fragment: str) -> None:
    with pytest.raises(ManagementError) as info:
        split(body)
    assert info.value.status == 400 and fragment in info.value.message


def test_the_body_shows_what_is_in_force() -> None:
    s = split({"weights": {"1.0": 90, "2.0": 10}, "shadow": {"3.0": 5}, "sticky_header": "x-user",
               "guard": {"version": "2.0", "max_error_rate": 0.05, "min_requests": 100, "window_s": 60}})
    assert s.body() == {"weights": {"1.0": 90, "2.0": 10}, "shadow": {"3.0": 5}, "sticky_header": "x-user",
                        "guard": {"version": "2.0", "max_error_rate": 0.05, "min_requests": 100, "window_s": 60.0},
                        "rolled_back": None}


@pytest.mark.parametrize("splits, expected", [
    ({"a": {"1.0": 50, "2.0": 50}}, []),
    ({"zzz": {"1.0": 100}}, ["TS_TRAFFIC_SPLIT names model zzz, which is not served"]),
    ({"a": {"1.0": 50, "2.0": 40}}, ["TS_TRAFFIC_SPLIT: model a: weights sum to 90: they must sum to 100"]),
])
def test_traffic_splits_are_checked_as_start_up_checks_them(splits: dict[str, object], expected: list[str]) -> None:
    specs = [ModelSpec("a", "1.0", "a.mar", "h.py"), ModelSpec("a", "2.0", "a2.mar", "h.py")]
    assert startup_splits(specs, splits)[1] == expected


def test_a_split_from_a_model_config_is_checked_too() -> None:
    specs = [ModelSpec("a", "1.0", "a.mar", "h.py", traffic={"weights": {"3.0": 100}})]
    problems = startup_splits(specs, {})[1]
    assert len(problems) == 1 and problems[0].startswith("the traffic of model a's config: model a: weights")
