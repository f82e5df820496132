"""The files under config/ stay true to the code."""

from __future__ import annotations

import yaml

from kserve_torchserve.config.properties import OWNED_KEYS, parse_properties
from kserve_torchserve.config.settings import load_settings, parse_ts_env
from tests.helpers import ROOT


def test_example_config_properties_sets_only_user_keys() -> None:
    props = parse_properties((ROOT / "config" / "config.properties").read_text())
    assert props and not set(props) & OWNED_KEYS


def test_runtime_args_and_env_are_accepted() -> None:
    runtime = yaml.safe_load((ROOT / "config" / "runtime.yaml").read_text())
    container = runtime["spec"]["containers"][0]
    args = [a.replace("{{.Name}}", "isvc") for a in container["args"]]
    settings = load_settings(args, env={e["name"]: e["value"] for e in container.get("env", [])})
    assert (settings.model_name, settings.http_port, settings.grpc_port) == ("isvc", 8080, 8081)
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_inference_service_env_is_valid() -> None:
    isvc = yaml.safe_load((ROOT / "config" / "inferenceservice.yaml").read_text())
    env = {e["name"]: e["value"] for e in isvc["spec"]["predictor"]["model"]["env"]}
    assert parse_ts_env(env).batch_size == 8
