from __future__ import annotations

from kserve_torchserve.config.model_config import ModelSpec
from kserve_torchserve.config.properties import (
    NO_URL, Ports, effective_properties, model_entry, parse_properties, render_properties,
)
from kserve_torchserve.config.settings import parse_ts_env

PORTS = Ports(inference=1001, management=1002, metrics=1003, grpc_inference=1004, grpc_management=1005)
DIGITS = ModelSpec(name="digits", version="1.0", mar_name="digits.mar", handler="handler.py")


def render(env: dict[str, str] | None = None, user: str = "") -> dict[str, str]:
    text = render_properties(effective_properties(parse_ts_env(env or {}), PORTS, "/store", user))
    return parse_properties(text)


def entry(env: dict[str, str] | None = None, user: str = "", spec: ModelSpec = DIGITS) -> dict[str, object]:
    """A model's settings as the runtime registers it: TS_* and the user's file as defaults."""
    return model_entry(spec, parse_ts_env(env or {}), int(render(env, user)["default_response_timeout"]))


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
    model = entry()
    assert model == {
        "defaultVersion": True, "marName": "digits.mar", "minWorkers": 1, "maxWorkers": 1,
        "batchSize": 1, "maxBatchDelay": 100, "responseTimeout": 120,
    }


def test_torchserve_starts_empty_and_never_downloads() -> None:
    """Models are registered through its management API (so a restart gets back what was served);
    its own url download matches nothing."""
    props = render(user="load_models=all\nmodels={}\nallowed_urls=.*\nenable_model_api=false\nservice_envelope=kserve")
    assert "load_models" not in props and "models" not in props
    assert props["service_envelope"] == "kserve_torchserve"  # ours (model_store/handlers/rows_envelope.py)
    assert "service_envelope" not in effective_properties(parse_ts_env({}), PORTS, "/store", envelope=False)
    assert props["enable_model_api"] == "true"
    assert props["allowed_urls"] == NO_URL
    import re
    assert not any(re.fullmatch(NO_URL, url) for url in ("", "file:///x.mar", "http://h/x.mar", "x.mar"))


def test_env_reaches_every_model() -> None:
    env = {"TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "50", "TS_INITIAL_WORKERS_COUNT": "2",
           "TS_MAX_WORKERS_COUNT": "4", "TS_NUMBER_OF_GPU": "1", "TS_MAX_REQUEST_SIZE": "10"}
    props = render(env)
    model = entry(env)
    assert (model["batchSize"], model["maxBatchDelay"], model["minWorkers"], model["maxWorkers"]) == (8, 50, 2, 4)
    assert props["number_of_gpu"] == "1"
    assert props["max_request_size"] == "10"


def test_model_spec_beats_global_defaults() -> None:
    spec = ModelSpec(name="m", version="2", mar_name="m.mar", handler="h", batch_size=4, max_batch_delay=5,
                     min_workers=2, max_workers=3, response_timeout=9)
    model = entry({"TS_BATCH_SIZE": "8"}, spec=spec)
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
    assert entry(user="default_response_timeout=30")["responseTimeout"] == 30


def test_passthrough_keys_are_rendered() -> None:
    props = render({"TS_TOKEN_EXPIRATION_MIN": "1", "TS_DISABLE_SYSTEM_METRICS": "true"})
    assert props["token_expiration_min"] == "1"
    assert props["disable_system_metrics"] == "true"


def test_rendered_text_parses_back_to_the_same_keys() -> None:
    props = effective_properties(parse_ts_env({"TS_BATCH_SIZE": "3"}), PORTS, "/store")
    assert parse_properties(render_properties(props)) == props


def test_parse_properties_handles_java_forms() -> None:
    text = "a=1\n  b : 2\n# c=3\n! d=4\ne=x\\\n  y\nf\n"
    assert parse_properties(text) == {"a": "1", "b": "2", "e": "xy", "f": ""}


def test_bad_numbers_in_the_user_file_are_named() -> None:
    import pytest

    from kserve_torchserve.errors import ConfigError

    with pytest.raises(ConfigError, match="default_response_timeout='soon' in config.properties is invalid"):
        render(user="default_response_timeout=soon")
