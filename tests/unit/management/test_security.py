"""The switch, the key and the name rules in front of every change to what is served."""

from __future__ import annotations

import pytest

from kserve_torchserve.config.model_api import ModelApiOptions
from kserve_torchserve.errors import ManagementError
from kserve_torchserve.management.security import Gate, check_name, check_version

KEY = "k" * 32


def _refused(authorization: str | None, options: ModelApiOptions) -> ManagementError:
    with pytest.raises(ManagementError) as info:
        Gate(options).check(authorization)
    return info.value


def test_off_by_default_and_the_message_names_the_switch() -> None:
    refused = _refused(f"Bearer {KEY}", ModelApiOptions())
    assert refused.status == 403 and "TS_ENABLE_MODEL_API" in refused.message


@pytest.mark.parametrize("authorization", [None, "", KEY, f"Basic {KEY}", f"Bearer {KEY}x", "Bearer ", f"Bearer {KEY[:-1]}"])
def test_a_missing_or_wrong_key_is_401(authorization: str | None) -> None:
    refused = _refused(authorization, ModelApiOptions(enabled=True, key=KEY))
    assert refused.status == 401 and refused.body()["type"] == "TokenAuthorizationException"


def test_the_right_key_passes() -> None:
    Gate(ModelApiOptions(enabled=True, key=KEY)).check(f"Bearer {KEY}")
    Gate(ModelApiOptions(enabled=True, key=KEY)).check(f"bearer  {KEY} ")


@pytest.mark.parametrize("name", ["digits", "new-model", "resnet_18.v2", "A1", "x" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "a..b", "a b", "x" * 65, "é", "a\nb", '"q"'])
def test_bad_names_are_400(name: str) -> None:
    with pytest.raises(ManagementError) as info:
        check_name(name)
    assert info.value.status == 400


@pytest.mark.parametrize("version", ["all", "traffic"])
def test_route_words_are_not_versions(version: str) -> None:
    with pytest.raises(ManagementError, match="route"):
        check_version(version)
