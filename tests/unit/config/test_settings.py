from __future__ import annotations

from pathlib import Path

import pytest

from kserve_torchserve.errors import ConfigError
from kserve_torchserve.config.settings import build_parser, load_settings, parse_ts_env


def test_defaults_follow_the_runtime_description() -> None:
    settings = load_settings([], env={})
    assert settings.storage_uri == "/mnt/models"
    assert settings.model_name is None
    ts = settings.ts
    assert ts.min_workers == 1 and ts.max_workers == 1
    assert (ts.number_of_gpu, ts.batch_size, ts.max_batch_delay) == (None, None, None)  # unset: lower tiers decide
    assert ts.log_level == "INFO"
    assert settings.fast_path  # v1 :predict and v2 /infer skip FastAPI unless told otherwise
    assert not load_settings(["--disable_fast_path"], env={}).fast_path
    assert settings.front_batching  # batches made in our process, not by TorchServe, unless told otherwise
    assert not load_settings(["--torchserve_batching"], env={}).front_batching
    assert not load_settings(["--request_per_instance"], env={}).front_batching  # no envelope: nothing to batch into


def test_cli_extends_kserve_parser() -> None:
    settings = load_settings(
        ["--model_name", "m", "--http_port", "9000", "--grpc_port", "9001", "--storage_uri", "s3://b/p"], env={}
    )
    assert (settings.model_name, settings.http_port, settings.grpc_port) == ("m", 9000, 9001)
    assert settings.storage_uri == "s3://b/p"


def test_storage_uri_from_env() -> None:
    assert load_settings([], env={"STORAGE_URI": "gs://x/y"}).storage_uri == "gs://x/y"
    assert load_settings(["--storage_uri", "/a"], env={"STORAGE_URI": "gs://x/y"}).storage_uri == "/a"


def test_help_documents_every_option() -> None:
    text = build_parser().format_help()
    for option in ("--model_name", "--http_port", "--grpc_port", "--storage_uri", "--work_dir",
                   "--startup_timeout", "--grace_period", "--max_restarts", "--restart_window", "--disable_fast_path"):
        assert option in text


def test_every_seed_variable_is_honoured() -> None:
    ts = parse_ts_env({
        "TS_NUMBER_OF_GPU": "1",
        "TS_MAX_REQUEST_SIZE": "100",
        "TS_MAX_RESPONSE_SIZE": "200",
        "TS_DEFAULT_WORKERS_PER_MODEL": "2",
        "TS_BATCH_SIZE": "8",
        "TS_MAX_BATCH_DELAY": "50",
        "TS_LOAD_MODELS": "resnet=resnet18.mar",
        "TS_INITIAL_WORKERS_COUNT": "3",
        "TS_MAX_WORKERS_COUNT": "4",
        "TS_LOG_LEVEL": "debug",
    })
    assert (ts.number_of_gpu, ts.max_request_size, ts.max_response_size) == (1, 100, 200)
    assert (ts.default_workers_per_model, ts.batch_size, ts.max_batch_delay) == (2, 8, 50)
    assert ts.load_models == "resnet=resnet18.mar"
    assert (ts.min_workers, ts.max_workers) == (3, 4)
    assert ts.log_level == "DEBUG"


def test_default_workers_sets_min_and_max() -> None:
    ts = parse_ts_env({"TS_DEFAULT_WORKERS_PER_MODEL": "2"})
    assert (ts.min_workers, ts.max_workers) == (2, 2)


def test_unknown_ts_variables_pass_through_as_keys() -> None:
    ts = parse_ts_env({"TS_FOO_BAR": "x", "TS_TOKEN_EXPIRATION_MIN": "1", "OTHER": "y"})
    assert dict(ts.passthrough) == {"foo_bar": "x", "token_expiration_min": "1"}


@pytest.mark.parametrize(
    "var,value,expected",
    [
        ("TS_BATCH_SIZE", "abc", "TS_BATCH_SIZE='abc' is invalid: expected an integer >= 1"),
        ("TS_BATCH_SIZE", "-1", "TS_BATCH_SIZE='-1' is invalid: expected an integer >= 1"),
        ("TS_MAX_BATCH_DELAY", "-5", "TS_MAX_BATCH_DELAY='-5' is invalid: expected an integer >= 0"),
        ("TS_NUMBER_OF_GPU", "one", "TS_NUMBER_OF_GPU='one' is invalid: expected an integer >= 0"),
        ("TS_MAX_REQUEST_SIZE", "0", "TS_MAX_REQUEST_SIZE='0' is invalid: expected an integer >= 1"),
        ("TS_LOG_LEVEL", "LOUD", "TS_LOG_LEVEL='LOUD' is invalid: expected one of TRACE, DEBUG, INFO, WARN, ERROR"),
        ("TS_CONFIG_FILE", "/no/such/file", "TS_CONFIG_FILE='/no/such/file' is invalid"),
    ],
)
def test_bad_values_name_the_variable_and_the_form(var: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ts_env({var: value})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_max_workers_below_min_is_refused() -> None:
    with pytest.raises(ConfigError, match="TS_MAX_WORKERS_COUNT=1 is invalid"):
        parse_ts_env({"TS_INITIAL_WORKERS_COUNT": "2", "TS_MAX_WORKERS_COUNT": "1"})


def test_config_file_variable(tmp_path: Path) -> None:
    user = tmp_path / "config.properties"
    user.write_text("job_queue_size=7\n")
    assert parse_ts_env({"TS_CONFIG_FILE": str(user)}).config_file == user


def test_negative_max_restarts_is_refused() -> None:
    with pytest.raises(ConfigError, match="--max_restarts=-1"):
        load_settings(["--max_restarts", "-1"], env={})


def test_several_front_processes_are_refused() -> None:
    # kserve's --workers forks REST processes; what is served lives in one (README "How a request flows").
    with pytest.raises(ConfigError, match="--workers=2 is not supported"):
        load_settings(["--workers", "2"], env={})
    assert load_settings(["--workers", "1"], env={}).http_port == 8080
