"""The deployment files under config/ are what a cluster accepts, and what our server accepts.

Every YAML document under config/ is checked the way ``kubectl apply`` gets it checked, for the
oldest KServe release the runtime supports (v0.16.0) and a current one (v0.20.0):

- KServe's resources against the OpenAPI schemas of KServe's CRDs (../shared/kserve-crds), with
  unknown fields refused as the API server's strict field validation refuses them;
- Kubernetes' own kinds (Secret, ServiceAccount, and every object's metadata) against Kubernetes'
  schemas, with kubernetes-validate;
- the rules KServe's admission webhooks add, each mirroring the KServe source named beside it.

Our own server must accept the runtimes' arguments and every sample's environment as the pod gets
them. The broken files in tests/assets/deploy/ must be refused, each with the error its
``# expect-error:`` lines name, so a check that stopped working shows up here.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import kubernetes_validate
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from kserve_torchserve.config.properties import OWNED_KEYS, parse_properties
from kserve_torchserve.config.model_api import parse_model_api
from kserve_torchserve.config.settings import load_settings, parse_ts_env
from tests.helpers import ASSETS, ROOT

Manifest = dict[str, Any]

CRDS = ROOT.parent / "shared" / "kserve-crds"
KSERVE_VERSIONS = ("v0.16.0", "v0.20.0")
# KServe v0.16 builds against k8s.io/api v0.33 (v0.20 against v0.34/v0.35): a cluster both run on.
KUBERNETES_VERSION = "1.33"
KSERVE_GROUP = "serving.kserve.io"
BROKEN = ASSETS / "deploy"

# KServe's own runtime for the same format, installed with KServe (config/runtimes/kserve-torchserve.yaml,
# identical in these fields at v0.16.0 and v0.20.0). Ours must not collide with it in the webhook.
STOCK_RUNTIMES: tuple[Manifest, ...] = (
    {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": "kserve-torchserve"},
        "spec": {
            "supportedModelFormats": [{"name": "pytorch", "version": "1", "autoSelect": True, "priority": 2}],
            "protocolVersions": ["v1", "v2", "grpc-v2"],
            "containers": [{"name": "kserve-container", "image": "kserve-torchserve:replace"}],
        },
    },
)
RUNTIME_KINDS = ("ClusterServingRuntime", "ServingRuntime")


# -- loading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    path: Path
    index: int  # position in a multi-document file
    body: Manifest

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}[{self.index}]:{self.kind}/{self.name}"


def documents(path: Path) -> list[Document]:
    bodies = [body for body in yaml.safe_load_all(path.read_text()) if body is not None]
    return [Document(path, index, body) for index, body in enumerate(bodies)]


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))


CONFIG = [doc for path in yaml_files(ROOT / "config") for doc in documents(path)]
CONFIG_RUNTIMES = [doc for doc in CONFIG if doc.kind in RUNTIME_KINDS]
CONFIG_ISVCS = [doc for doc in CONFIG if doc.kind == "InferenceService"]
SAMPLES = yaml_files(ROOT / "config" / "samples")


def known_runtimes() -> list[Manifest]:
    return [doc.body for doc in CONFIG_RUNTIMES] + list(STOCK_RUNTIMES)


def runtime_named(name: str) -> Manifest:
    return next(doc.body for doc in CONFIG_RUNTIMES if doc.name == name)


def server_container(runtime: Manifest) -> Manifest:
    containers: list[Manifest] = runtime["spec"]["containers"]
    return next(c for c in containers if c["name"] == "kserve-container")


def literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    """Variables with a value in the file (valueFrom ones are filled in by the cluster)."""
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


# -- the API server: OpenAPI schemas -----------------------------------------------------------------


def strict(schema: Manifest) -> Manifest:
    """A CRD schema as the API server applies it: unknown fields refused, int-or-string either.

    Only the structural parts (properties, items, map values) are made strict; anyOf/allOf/oneOf/not
    are value checks over the same object and may list a subset of its properties.
    """
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: strict(sub) for name, sub in out["properties"].items()}
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@functools.cache
def crd_validators(version: str) -> dict[tuple[str, str], OAS30Validator]:
    """(apiVersion, kind) -> validator, for every served version of KServe's CRDs; loaded once."""
    found: dict[tuple[str, str], OAS30Validator] = {}
    for path in sorted((CRDS / version).glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)  # the C loader: 2 MB of schema
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for served in crd["spec"]["versions"]:
            if served.get("served"):
                found[(f"{group}/{served['name']}", kind)] = OAS30Validator(strict(served["schema"]["openAPIV3Schema"]))
    return found


def _json_path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "(document)"


def kubernetes_errors(body: Manifest) -> list[str]:
    try:
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{_json_path(err.absolute_path)}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"{body.get('apiVersion')} {body.get('kind')}: {err.message}"]
    return []


@functools.cache
def metadata_errors(metadata_json: str) -> list[str]:
    """ObjectMeta, which KServe's CRDs leave to the API server: checked as a ConfigMap's."""
    return kubernetes_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": json.loads(metadata_json)})


# DNS-1123 subdomain: the API server's rule for the names of these kinds.
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def schema_errors(body: Manifest, version: str) -> list[str]:
    api_version, kind = str(body.get("apiVersion", "")), str(body.get("kind", ""))
    if api_version.split("/")[0] != KSERVE_GROUP:
        return kubernetes_errors(body)
    validator = crd_validators(version).get((api_version, kind))
    if validator is None:
        return [f"{api_version} {kind}: no such resource in KServe {version}"]
    errors = [f"{_json_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    metadata = body.get("metadata", {})
    errors += metadata_errors(json.dumps(metadata, sort_keys=True))
    name = str(metadata.get("name", ""))
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        errors.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    return errors


# -- KServe's admission webhooks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Webhooks:
    """What differs between the releases' webhooks."""

    # pkg/validation/env_policy.go DefaultBlockedEnvVars: new in v0.20 (InferenceService and runtimes).
    blocked_env: frozenset[str]
    # pkg/apis/serving/v1beta1/inference_service_defaults.go: v0.20's defaulter renames RawDeployment
    # to Standard and Serverless to Knative before validation; v0.16's validator sees them as written.
    renames_legacy_modes: bool


WEBHOOKS = {
    "v0.16.0": Webhooks(blocked_env=frozenset(), renames_legacy_modes=False),
    "v0.20.0": Webhooks(blocked_env=frozenset({"PYTHONPATH"}), renames_legacy_modes=True),
}

ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # inference_service_validation.go IsvcNameFmt
TRAINED_MODEL_NAME = re.compile(r"[a-zA-Z0-9_-]+")  # v1alpha1/trainedmodel_webhook.go TmNameFmt
PROTOCOLS = frozenset({"v1", "v2", "grpc-v1", "grpc-v2"})  # constants.go InferenceServiceProtocol
AUTOSCALER_CLASSES = frozenset({"hpa", "external", "keda", "none"})  # constants.AutoscalerAllowedClassList
HPA_METRICS = frozenset({"cpu", "memory"})  # constants.AutoscalerAllowedHPAMetricsList
KPA_METRICS = frozenset({"concurrency", "rps"})  # constants.AutoscalerAllowedKPAMetricsList
# The agent's downloaders (pkg/agent/storage/provider.go), which TrainedModel URIs must use.
TRAINED_MODEL_URI_PREFIXES = ("s3://", "gs://", "abfs://", "https://", "http://")
# Storage URIs the controller can fetch (inferenceservice/utils/utils.go SupportedStorageURIPrefixList).
STORAGE_URI_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://",
                        "webhdfs://", "oci://", "hf://")
FRAMEWORKS = ("model", "pytorch", "sklearn", "xgboost", "tensorflow", "onnx", "triton", "huggingface",
              "pmml", "lightgbm", "paddle")
COMPONENTS = ("predictor", "transformer", "explainer")


def _auto_selected(model_format: Manifest) -> bool:
    return model_format.get("autoSelect") is True


def priority_clash(new: Manifest, existing: Manifest) -> str | None:
    """servingruntime_webhook.go validateServingRuntimePriority, for one existing runtime."""
    a, b = new["spec"], existing["spec"]
    if (bool(a.get("multiModel")) != bool(b.get("multiModel")) or b.get("disabled")
            or new["metadata"]["name"] == existing["metadata"]["name"]):
        return None
    if not set(a.get("protocolVersions") or []) & set(b.get("protocolVersions") or []):
        return None
    for theirs in b.get("supportedModelFormats", []):
        for ours in a.get("supportedModelFormats", []):
            if (_auto_selected(theirs) and _auto_selected(ours)
                    and ours["name"].lower() == theirs["name"].lower()
                    and ours.get("version") == theirs.get("version")
                    and ours.get("priority") is not None and ours.get("priority") == theirs.get("priority")):
                return (f"spec.supportedModelFormats: priority {ours['priority']} for {ours['name']} "
                        f"{ours.get('version')} is also runtime {existing['metadata']['name']}'s")
    return None


def runtime_webhook_errors(body: Manifest, runtimes: list[Manifest], webhooks: Webhooks) -> list[str]:
    spec = body["spec"]
    errors = [f"spec.protocolVersions: {p!r} is not one of {sorted(PROTOCOLS)}"
              for p in spec.get("protocolVersions", []) if p not in PROTOCOLS]
    if spec.get("disabled"):
        return errors  # the webhook checks priorities of enabled runtimes only
    priorities: dict[str, Any] = {}
    for model_format in filter(_auto_selected, spec.get("supportedModelFormats", [])):
        seen = priorities.setdefault(model_format["name"], model_format.get("priority"))
        if None not in (seen, model_format.get("priority")) and seen != model_format.get("priority"):
            errors.append(f"spec.supportedModelFormats: different priorities for {model_format['name']}")
    errors += [clash for other in runtimes if (clash := priority_clash(body, other))]
    for index, container in enumerate(spec.get("containers", [])):
        errors += [f"spec.containers[{index}].env: {e['name']} is not allowed"
                   for e in container.get("env", []) if e["name"] in webhooks.blocked_env]
    return errors


def component_containers(component: Manifest) -> Iterator[tuple[str, Manifest]]:
    for key in ("containers", "initContainers"):
        for index, container in enumerate(component.get(key, [])):
            yield f"{key}[{index}]", container
    for key in FRAMEWORKS:
        if key in component:
            yield key, component[key]


def autoscaling_errors(annotations: Mapping[str, str], path: str, component: Manifest,
                       webhooks: Webhooks) -> list[str]:
    """inference_service_validation.go validateAutoScalingCompExtension."""
    mode = annotations.get("serving.kserve.io/deploymentMode", "")
    if webhooks.renames_legacy_modes:
        mode = {"RawDeployment": "Standard", "Serverless": "Knative"}.get(mode, mode)
    if mode == "Standard":
        if annotations.get("serving.kserve.io/autoscalerClass") != "hpa":
            return []  # KEDA and external autoscalers have rules of their own; no file here uses them
        allowed, default = HPA_METRICS, "cpu"
    elif annotations.get("autoscaling.knative.dev/class") == "hpa.autoscaling.knative.dev":
        allowed, default = HPA_METRICS, "cpu"
    else:  # Knative's own autoscaler: also what v0.16 assumes for "RawDeployment"
        if "deploymentStrategy" in component:
            return [f"{path}.deploymentStrategy: only for the Standard (raw) deployment mode"]
        allowed, default = KPA_METRICS, "concurrency"
    metric = component.get("scaleMetric", default)
    target = component.get("scaleTarget")
    if metric not in allowed:
        return [f"{path}.scaleMetric: [{metric}] is not a supported metric in deployment mode {mode or 'default'}"
                f" (allowed: {sorted(allowed)})"]
    if target is not None:
        # The webhook's own condition, precedence included: any target over 100 is refused.
        if (metric == "cpu" and target < 1) or (allowed == HPA_METRICS and target > 100):
            return [f"{path}.scaleTarget: the target utilization percentage should be a [1-100] integer"]
        if (metric == "memory" and target < 1) or (metric == "rps" and target < 1):
            return [f"{path}.scaleTarget: must be at least 1"]
    return []


def runtime_reference_errors(model: Manifest, runtimes: list[Manifest]) -> list[str]:
    """What the controller checks on a pinned runtime (components/predictor.go)."""
    path = "spec.predictor.model"
    name = model.get("runtime")
    if name is None:
        return []
    runtime = next((r for r in runtimes if r["metadata"]["name"] == name), None)
    if runtime is None:
        return [f"{path}.runtime: no runtime named {name!r} in config/ or among KServe's own"]
    spec, model_format = runtime["spec"], model.get("modelFormat", {})
    errors = []
    if not any(f["name"].lower() == str(model_format.get("name", "")).lower()
               and model_format.get("version") in (None, f.get("version"))
               for f in spec.get("supportedModelFormats", [])):
        errors.append(f"{path}.modelFormat: runtime {name} does not support {model_format}")
    protocol = model.get("protocolVersion")
    if protocol is not None and spec.get("protocolVersions") and protocol not in spec["protocolVersions"]:
        errors.append(f"{path}.protocolVersion: runtime {name} does not support {protocol}")
    return errors


def isvc_webhook_errors(body: Manifest, runtimes: list[Manifest], webhooks: Webhooks) -> list[str]:
    name = body["metadata"].get("name", "")
    annotations = body["metadata"].get("annotations", {})
    spec = body["spec"]
    errors = []
    if not ISVC_NAME.fullmatch(name):
        errors.append(f"metadata.name: {name!r} does not match KServe's name format {ISVC_NAME.pattern}")
    autoscaler = annotations.get("serving.kserve.io/autoscalerClass")
    if autoscaler is not None and autoscaler not in AUTOSCALER_CLASSES:
        errors.append(f"metadata.annotations: [{autoscaler}] is not a supported autoscaler class type")
    for component_name in COMPONENTS:
        component = spec.get(component_name)
        if component is None:
            continue
        path = f"spec.{component_name}"
        for where, container in component_containers(component):
            errors += [f"{path}.{where}.env: setting {e['name']} is not allowed for security reasons"
                       for e in container.get("env", []) if e["name"] in webhooks.blocked_env]
            protocol = container.get("protocolVersion")
            if protocol is not None and protocol not in PROTOCOLS:
                errors.append(f"{path}.{where}.protocolVersion: {protocol!r} is not one of {sorted(PROTOCOLS)}")
            uri = container.get("storageUri")
            if uri is not None and not str(uri).startswith(STORAGE_URI_PREFIXES):
                errors.append(f"{path}.{where}.storageUri: {uri!r} has no storage scheme KServe can fetch")
        # Knative takes a revision's share as an integer percent (the schema checks the type).
        canary = component.get("canaryTrafficPercent")
        if canary is not None and (isinstance(canary, bool) or not isinstance(canary, int) or not 0 <= canary <= 100):
            errors.append(f"{path}.canaryTrafficPercent: {canary!r} is not an integer percentage 0..100")
        errors += autoscaling_errors(annotations, path, component, webhooks)
    if "model" in spec.get("predictor", {}):
        errors += runtime_reference_errors(spec["predictor"]["model"], runtimes)
    return errors


def trained_model_webhook_errors(body: Manifest) -> list[str]:
    name = body["metadata"].get("name", "")
    uri = str(body["spec"]["model"].get("storageUri", ""))
    errors = []
    if not TRAINED_MODEL_NAME.fullmatch(name):
        errors.append(f"metadata.name: {name!r} does not match {TRAINED_MODEL_NAME.pattern}")
    if not uri.startswith(TRAINED_MODEL_URI_PREFIXES):
        errors.append(f"spec.model.storageUri: {uri!r} must start with one of {TRAINED_MODEL_URI_PREFIXES}")
    return errors


def webhook_errors(body: Manifest, version: str, runtimes: list[Manifest]) -> list[str]:
    webhooks = WEBHOOKS[version]
    kind = body.get("kind")
    if kind in RUNTIME_KINDS:
        return runtime_webhook_errors(body, runtimes, webhooks)
    if kind == "InferenceService":
        return isvc_webhook_errors(body, runtimes, webhooks)
    if kind == "TrainedModel":
        return trained_model_webhook_errors(body)
    return []


def cluster_errors(body: Manifest, version: str, runtimes: list[Manifest]) -> list[str]:
    """Everything `kubectl apply` would be told, for one document and one KServe release."""
    errors = schema_errors(body, version)
    if errors:
        return errors  # the API server stops here; the webhooks would see a different object
    return webhook_errors(body, version, runtimes)


@pytest.fixture(scope="module")
def kserve_crds() -> Path:
    if not all((CRDS / version).is_dir() for version in KSERVE_VERSIONS):
        pytest.skip(f"KServe's CRDs for {', '.join(KSERVE_VERSIONS)} are not in {CRDS}: the shared folder "
                    "beside the checkout is missing, so the deployment files cannot be checked against them")
    return CRDS


# -- the files under config/ -------------------------------------------------------------------------


def test_config_holds_both_runtimes_and_the_samples() -> None:
    # Guards the parametrized tests below against passing on an empty list.
    assert {doc.name for doc in CONFIG_RUNTIMES} == {"kserve-torchserve-next", "kserve-torchserve-next-mms"}
    assert len(SAMPLES) >= 16 and len(CONFIG_ISVCS) >= 16
    assert {doc.kind for doc in CONFIG} >= {"Secret", "ServiceAccount", "TrainedModel"}


@pytest.mark.parametrize("version", KSERVE_VERSIONS)
@pytest.mark.parametrize("doc", CONFIG, ids=str)
def test_config_document_is_accepted_by_kserve(doc: Document, version: str, kserve_crds: Path) -> None:
    assert cluster_errors(doc.body, version, known_runtimes()) == []


def test_runtimes_keep_clear_of_kserves_own() -> None:
    for doc in CONFIG_RUNTIMES:
        # That name is KServe's own runtime: applying ours under it would replace KServe's.
        assert doc.name != "kserve-torchserve"
        # KServe's controller applies its TorchServe defaults (PROTOCOL_VERSION, the -gpu image tag).
        assert doc.body["metadata"]["annotations"]["serving.kserve.io/server-type"] == "torchserve"
        # Only the TrainedModel runtime is multi-model, so it is never picked for a storageUri.
        assert bool(doc.body["spec"].get("multiModel")) == doc.name.endswith("-mms")
        for other in known_runtimes():
            assert priority_clash(doc.body, other) is None


@pytest.mark.parametrize("doc", CONFIG_RUNTIMES, ids=str)
def test_runtime_container_runs_our_server_read_only(doc: Document) -> None:
    container = server_container(doc.body)
    env = literal_env(container)
    # What KServe's controller adds for a server-type torchserve runtime (SetTorchServeDefaults).
    injected = {"PROTOCOL_VERSION": "grpc-v2", "TS_SERVICE_ENVELOPE": "kservev2"}
    settings = load_settings([arg.replace("{{.Name}}", "isvc") for arg in container["args"]], env={**env, **injected})
    assert settings.protocol_version == "grpc-v2"
    assert (settings.http_port, settings.grpc_port) == (8080, 8081)
    assert settings.model_name == ("isvc" if "--model_name={{.Name}}" in container["args"] else None)
    assert settings.storage_uri == "/mnt/models"

    empty_dirs = {v["name"] for v in doc.body["spec"]["volumes"] if "emptyDir" in v}
    writable = [Path(m["mountPath"]) for m in container["volumeMounts"] if m["name"] in empty_dirs]
    assert settings.work_dir is not None and any(settings.work_dir.is_relative_to(w) for w in writable)
    assert Path(env["TMPDIR"]) in writable

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert f"--uid {security['runAsUser']}" in (ROOT / "Dockerfile").read_text()  # the image's user

    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    annotations = doc.body["spec"]["annotations"]
    assert (annotations["prometheus.kserve.io/port"], annotations["prometheus.kserve.io/path"]) == ("8080", "/metrics")


# Knative's webhook checks the Knative Service KServe builds from runtime and InferenceService
# (knative/serving pkg/apis/serving/fieldmask.go, k8s_validation.go). Kept to the oldest rules still met:
# the securityContext fields 1.15 allows (`privileged`, even false, only from 1.17), and the mount
# paths reserved up to 1.12.
KNATIVE_SECURITY_FIELDS = frozenset({"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup",
                                     "runAsNonRoot", "allowPrivilegeEscalation", "seccompProfile"})
KNATIVE_RESERVED_MOUNT_PATHS = frozenset({"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"})
KNATIVE_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})


@pytest.mark.parametrize("doc", CONFIG_RUNTIMES, ids=str)
def test_runtime_container_passes_knatives_webhook(doc: Document) -> None:
    container = server_container(doc.body)
    security = container.get("securityContext", {})
    assert set(security) <= KNATIVE_SECURITY_FIELDS and set(security.get("capabilities", {})) <= {"drop"}
    mounts = {str(Path(m["mountPath"])) for m in container.get("volumeMounts", [])}
    assert not mounts & KNATIVE_RESERVED_MOUNT_PATHS
    assert not set(literal_env(container)) & KNATIVE_RESERVED_ENV
    assert "startupProbe" not in container  # Knative before 1.15 refuses it


@pytest.mark.parametrize("doc", CONFIG_ISVCS, ids=str)
def test_sample_environment_is_accepted_by_our_server(doc: Document) -> None:
    """The pod's arguments and environment: the runtime's, then the InferenceService's on top."""
    model = doc.body["spec"]["predictor"]["model"]
    container = server_container(runtime_named(model["runtime"]))
    args = [arg.replace("{{.Name}}", doc.name) for arg in container["args"]] + model.get("args", [])
    env = literal_env(container) | literal_env(model)
    settings = load_settings(args, env=env)  # ConfigError names a bad TS_* value
    assert settings.ts == parse_ts_env({k: v for k, v in env.items() if k.startswith("TS_")})


def deployment_mode(doc: Document) -> str:
    # Unannotated InferenceServices get inferenceservice-config's default, Serverless in both releases.
    mode = str(doc.body["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode", "Knative"))
    return {"RawDeployment": "Standard", "Serverless": "Knative"}.get(mode, mode)


@pytest.mark.parametrize("doc", [d for d in CONFIG_ISVCS if deployment_mode(d) == "Knative"], ids=str)
def test_knative_gets_the_one_port_it_can_route(doc: Document) -> None:
    """Knative's webhook allows one container port, unnamed, http1 or h2c. KServe merges the
    InferenceService's ports into the runtime's by containerPort (strategic merge), so both count."""
    model = doc.body["spec"]["predictor"]["model"]
    ports = {p["containerPort"]: p for p in server_container(runtime_named(model["runtime"])).get("ports", [])}
    ports |= {p["containerPort"]: p for p in model.get("ports", [])}
    assert len(ports) <= 1 and all(p.get("name", "") in ("", "http1", "h2c") for p in ports.values())
    if model.get("protocolVersion") == "grpc-v2":
        assert [(p["name"], p["containerPort"]) for p in ports.values()] == [("h2c", 8081)]  # --grpc_port


def test_batching_and_traffic_split_samples_reach_torchserve() -> None:
    def ts_env(sample: str) -> dict[str, str]:
        (doc,) = documents(ROOT / "config" / "samples" / sample)
        return literal_env(doc.body["spec"]["predictor"]["model"])

    batching = parse_ts_env(ts_env("dynamic-batching.yaml"))
    assert (batching.batch_size, batching.max_batch_delay) == (8, 50)
    assert parse_model_api(ts_env("traffic-split.yaml"), "/mnt/models").traffic == {"digits": {"1.0": 80, "2.0": 20}}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_says_what_it_is_and_how_to_apply_and_call_it(path: Path) -> None:
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert f"kubectl apply -f config/samples/{path.name}" in header
    assert re.search(r"\b(curl|grpcurl) ", header), "no example call"
    assert "config/runtimes/" in header, "does not say which runtime to install first"


def test_trained_models_target_a_multi_model_inference_service_with_room() -> None:
    isvcs = {doc.name: doc.body for doc in CONFIG_ISVCS}
    trained = [doc.body for doc in CONFIG if doc.kind == "TrainedModel"]
    assert trained
    for target in {tm["spec"]["inferenceService"] for tm in trained}:
        predictor = isvcs[target]["spec"]["predictor"]
        model = predictor["model"]
        # Only a predictor without storage gets KServe's agent (utils.go IsMMSPredictor).
        assert not {"storageUri", "storage"} & set(model) and "storageUris" not in predictor
        assert runtime_named(model["runtime"])["spec"]["supportedModelFormats"][0]["name"] == "pytorch"
        # The TrainedModel controller places models while their memory fits the predictor's limit.
        models = [tm["spec"]["model"] for tm in trained if tm["spec"]["inferenceService"] == target]
        wanted = sum(quantity(m["memory"]) for m in models)
        assert wanted <= quantity(model["resources"]["limits"]["memory"])


def test_service_accounts_and_their_secrets_are_in_the_same_file() -> None:
    for doc in CONFIG_ISVCS:
        account = doc.body["spec"]["predictor"].get("serviceAccountName")
        if account is None:
            continue
        siblings = {(d.kind, d.name): d.body for d in documents(doc.path)}
        secrets = [s["name"] for s in siblings[("ServiceAccount", account)]["secrets"]]
        assert secrets and all(("Secret", s) in siblings for s in secrets)
        for secret in secrets:
            assert "serving.kserve.io/s3-endpoint" in siblings[("Secret", secret)]["metadata"]["annotations"]


def test_example_config_properties_sets_only_user_keys() -> None:
    props = parse_properties((ROOT / "config" / "config.properties").read_text())
    assert props and not set(props) & OWNED_KEYS


_QUANTITY = re.compile(r"([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T|)")
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "": 1}


def quantity(value: str | int) -> float:
    match = _QUANTITY.fullmatch(str(value))
    assert match, f"not a memory quantity: {value!r}"
    return float(match[1]) * _UNITS[match[2]]


# -- deliberately broken files -----------------------------------------------------------------------

_EXPECT = re.compile(r"^# expect-error(?: (v[0-9.]+))?: (.+)$", re.MULTILINE)


@pytest.mark.parametrize("path", yaml_files(BROKEN), ids=lambda p: p.name)
def test_broken_deploy_file_is_refused(path: Path, kserve_crds: Path) -> None:
    expected = _EXPECT.findall(path.read_text())
    assert expected, f"{path.name} does not say which error it expects (# expect-error[ vX.Y.Z]: text)"
    errors = {version: [e for doc in documents(path) for e in cluster_errors(doc.body, version, known_runtimes())]
              for version in KSERVE_VERSIONS}
    for version, text in expected:
        for checked in [version] if version else KSERVE_VERSIONS:
            assert any(text in error for error in errors[checked]), (
                f"{path.name} on KServe {checked}: no error mentions {text!r}; got {errors[checked]}")


def test_broken_files_exist() -> None:
    names = {p.name for p in yaml_files(BROKEN)}
    assert {"isvc-storageuri-typo.yaml", "isvc-canary-string.yaml", "isvc-bad-name.yaml"} <= names
