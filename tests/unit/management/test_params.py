"""management/params.py: parameters of TorchServe's management API as we take them."""

from __future__ import annotations

import pytest

from kserve_torchserve.errors import ManagementError
from kserve_torchserve.management.params import flag, integer


def test_integers_within_their_bounds_pass() -> None:
    assert integer({"min_worker": "4"}, "min_worker") == 4
    assert integer({"max_batch_delay": "0"}, "max_batch_delay") == 0
    assert integer({}, "batch_size") is None


@pytest.mark.parametrize("name, raw", [("min_worker", "100000"), ("max_worker", "0"), ("batch_size", "x"),
                                       ("initial_workers", "65"), ("response_timeout", "-1")])
def test_out_of_bounds_or_not_an_integer_is_400_with_the_range(name: str, raw: str) -> None:
    with pytest.raises(ManagementError) as caught:
        integer({name: raw}, name)
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"{name} must be an integer from ")  # the range, not the value


def test_flags_are_true_or_false_or_the_default() -> None:
    assert flag({"synchronous": " TRUE "}, "synchronous", False) is True
    assert flag({"synchronous": "false"}, "synchronous", True) is False
    assert flag({}, "synchronous", True) is True
    with pytest.raises(ManagementError) as caught:
        flag({"synchronous": "yes please"}, "synchronous", True)
    assert (caught.value.status, caught.value.message) == (400, "synchronous must be true or false")
