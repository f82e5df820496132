"""Settings of run-time model management: safe by default, one line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from kserve_torchserve.config.model_api import DEFAULT_MAX_MODELS, parse_model_api
from kserve_torchserve.config.settings import load_settings, parse_ts_env
from kserve_torchserve.errors import ConfigError

KEY = "0123456789abcdef0123"


def test_off_by_default_allowing_only_the_storage_location() -> None:
    options = parse_model_api({}, "s3://bucket/models")
    assert not options.enabled and options.key is None and options.repository
    assert options.allowed_urls == (r"s3://bucket/models(/.*)?",) and options.max_models == DEFAULT_MAX_MODELS


def test_enabled_needs_a_key_and_says_how_to_set_one() -> None:
    with pytest.raises(ConfigError, match="TS_MODEL_API_KEY.*--model_api_key_file"):
        parse_model_api({"TS_ENABLE_MODEL_API": "true"}, "/mnt/models")
    with pytest.raises(ConfigError, match="TS_MODEL_API_KEY"):
        parse_model_api({}, "/mnt/models", enable_flag=True)
    options = parse_model_api({"TS_ENABLE_MODEL_API": "true", "TS_MODEL_API_KEY": KEY}, "/mnt/models")
    assert options.enabled and options.key == KEY


def test_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    options = parse_model_api({}, "/m", enable_flag=True, key_file=tmp_path / "key")
    assert options.key == KEY
    with pytest.raises(ConfigError, match="cannot be read"):
        parse_model_api({}, "/m", enable_flag=True, key_file=tmp_path / "missing")


@pytest.mark.parametrize("env,fragment", [
    ({"TS_MODEL_API_KEY": "short"}, "shorter than 16"),
    ({"TS_ENABLE_MODEL_API": "maybe"}, "TS_ENABLE_MODEL_API='maybe'"),
    ({"TS_ALLOWED_URLS": "s3://ok/.*,(unclosed"}, "not a valid regular expression"),
    ({"TS_MAX_MODELS": "0"}, "TS_MAX_MODELS='0'"),
    ({"TS_MODEL_REPOSITORY": "sometimes"}, "TS_MODEL_REPOSITORY"),
])
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        parse_model_api(env, "/mnt/models")


def test_allowed_urls_and_switches() -> None:
    options = parse_model_api({"TS_ALLOWED_URLS": r"s3://a/.*, https://h/m/.*", "TS_MODEL_REPOSITORY": "off",
                               "TS_MAX_MODELS": "3"}, "/mnt/models")
    assert options.allowed_urls == (r"s3://a/.*", r"https://h/m/.*")
    assert not options.repository and options.max_models == 3


def test_our_variables_never_reach_torchserve() -> None:
    env = {"TS_ENABLE_MODEL_API": "true", "TS_MODEL_API_KEY": KEY, "TS_ALLOWED_URLS": ".*", "TS_MAX_MODELS": "2",
           "TS_MODEL_REPOSITORY": "on"}
    assert parse_ts_env(env).passthrough == ()
    settings = load_settings(["--enable_model_api", "--allow_no_models"], env={"TS_MODEL_API_KEY": KEY})
    assert settings.model_api.enabled and settings.allow_no_models
