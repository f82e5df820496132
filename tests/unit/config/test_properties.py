from __future__ import annotations

import json

from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.config.properties import Ports, effective_properties, parse_properties, render_properties
from kserve_torchserve.config.settings import parse_ts_env

PORTS = Ports(inference=1001, management=1002, metrics=1003, grpc_inference=1004, grpc_management=1005)
DIGITS = ModelSpec(name="digits", version="1.0", mar_name="digits.mar", handler="handler.py")


def render(env: dict[str, str] | None = None, user: str = "", specs: tuple[ModelSpec, ...] = (DIGITS,)) -> dict[str, str]:
    text = render_properties(effective_properties(parse_ts_env(env or {}), specs, PORTS, "/store", user))
    return parse_properties(text)


def test_addresses_are_loopback_on_the_chosen_ports() -> None:
    props = render()
    assert props["inference_address"] == "http://127.0.0.1:1001"
    assert props["management_address"] == "http://127.0.0.1:1002"
    assert props["metrics_address"] == "http://127.0.0.1:1003"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert (props["grpc_inference_port"], props["grpc_management_port"]) == ("1004", "1005")
    assert props["model_store"] == "/store"
    assert props["metrics_mode"] == "prometheus"


def test_defaults_match_the_runtime_description() -> None:
    props = render()
    assert props["max_request_size"] == props["max_response_size"] == "6553600"
    assert props["number_of_gpu"] == "0"
    model = json.loads(props["models"])["digits"]["1.0"]
    assert model == {
        "defaultVersion": True, "marName": "digits.mar", "minWorkers": 1, "maxWorkers": 1,
        "batchSize": 1, "maxBatchDelay": 100, "responseTimeout": 120,
    }
    assert props["load_models"] == "digits=digits.mar"


def test_env_reaches_every_model() -> None:
    props = render({"TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "50", "TS_INITIAL_WORKERS_COUNT": "2",
                    "TS_MAX_WORKERS_COUNT": "4", "TS_NUMBER_OF_GPU": "1", "TS_MAX_REQUEST_SIZE": "10"})
    model = json.loads(props["models"])["digits"]["1.0"]
    assert (model["batchSize"], model["maxBatchDelay"], model["minWorkers"], model["maxWorkers"]) == (8, 50, 2, 4)
    assert props["number_of_gpu"] == "1"
    assert props["max_request_size"] == "10"


def test_model_spec_beats_global_defaults() -> None:
    spec = ModelSpec(name="m", version="2", mar_name="m.mar", handler="h", batch_size=4, max_batch_delay=5,
                     min_workers=2, max_workers=3, response_timeout=9)
    model = json.loads(render({"TS_BATCH_SIZE": "8"}, specs=(spec,))["models"])["m"]["2"]
    assert (model["batchSize"], model["maxBatchDelay"], model["minWorkers"], model["maxWorkers"],
            model["responseTimeout"]) == (4, 5, 2, 3, 9)


def test_precedence_user_file_then_env_then_owned() -> None:
    user = "\n".join([
        "# the user's own file",
        "max_request_size=111",         # user only: kept
        "max_response_size=222",        # user and env: env wins
        "job_queue_size=7",
        "inference_address=http://0.0.0.0:8080",  # owned: ours wins
        "model_store=/elsewhere",
        "enable_envvars_config=true",
    ])
    props = render({"TS_MAX_RESPONSE_SIZE": "333", "TS_INFERENCE_ADDRESS": "http://0.0.0.0:1"}, user=user)
    assert props["max_request_size"] == "111"
    assert props["max_response_size"] == "333"
    assert props["job_queue_size"] == "7"
    assert props["inference_address"] == "http://127.0.0.1:1001"
    assert props["model_store"] == "/store"
    assert props["enable_envvars_config"] == "false"


def test_user_response_timeout_reaches_models() -> None:
    props = render(user="default_response_timeout=30")
    assert json.loads(props["models"])["digits"]["1.0"]["responseTimeout"] == 30


def test_passthrough_keys_are_rendered() -> None:
    props = render({"TS_TOKEN_EXPIRATION_MIN": "1", "TS_DISABLE_SYSTEM_METRICS": "true"})
    assert props["token_expiration_min"] == "1"
    assert props["disable_system_metrics"] == "true"


def test_rendered_text_parses_back_to_the_same_keys() -> None:
    props = effective_properties(parse_ts_env({"TS_BATCH_SIZE": "3"}), (DIGITS,), PORTS, "/store")
    assert parse_properties(render_properties(props)) == props


def test_parse_properties_handles_java_forms() -> None:
    text = "a=1\n  b : 2\n# c=3\n! d=4\ne=x\\\n  y\nf\n"
    assert parse_properties(text) == {"a": "1", "b": "2", "e": "xy", "f": ""}


def test_bad_numbers_in_the_user_file_are_named() -> None:
    import pytest

    from kserve_torchserve.errors import ConfigError

    with pytest.raises(ConfigError, match="default_response_timeout='soon' in config.properties is invalid"):
        render(user="default_response_timeout=soon")
