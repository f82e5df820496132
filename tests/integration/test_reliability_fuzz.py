"""Issue #16 row 4: schemathesis against our /openapi.json, every route, 500 cases: no 5xx, no hang.

One server with the digits model and the model management API on (with a key, sent with
every case, so the /models writes are exercised past the key check). Cases come from
schemathesis' Hypothesis strategies, derandomized: the same 500 requests every run.

Where a route takes a model name, part of its cases name the served model (``digits``,
version ``1.0``), so they reach the model, TorchServe and the handler rather than a 404.
Except where a valid request would take the model away or the machine down: unregister
and unload (every later case would be a 404), and scaling (a positive case may ask for any
number of workers, and TorchServe starts them all; that is an operator's choice behind the
key, not a bug in a request). Those name unknown models only.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from kserve_torchserve.serving.openapi import extend
from tests.helpers import Server, http, running

pytestmark = pytest.mark.integration

KEY = "fuzz-key-0123456789abcdef"
MODEL, VERSION = "digits", "1.0"
TOTAL_CASES = 500
CALL_TIMEOUT_S = 10.0  # a hang: no answer within this (the slowest honest answer here takes < 1 s)
# Cases per (operation, how): the inference routes and the routes with bodies get most.
HEAVY = {"POST /v1/models/{model_name}:predict", "POST /v1/models/{model_name}:explain",
         "POST /v2/models/{model_name}/infer", "POST /v2/models/{model_name}/versions/{model_version}/infer",
         "POST /models", "PUT /models/{name}/traffic"}
VERSIONED_INFER = "POST /v2/models/{model_name}/versions/{model_version}/infer"
# Never with the served model's name (see the module docstring).
NEVER_SERVED = {"PUT /models/{name}", "PUT /models/{name}/{version}", "DELETE /models/{name}",
                "DELETE /models/{name}/{version}", "POST /v2/repository/models/{model_name}/unload"}


@dataclass
class Findings:
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # one line each: what, then the curl reproduction
    known: dict[str, str] = field(default_factory=dict)  # open defect -> its first reproduction
    cases: int = 0

    def record(self, label: str, outcome: str) -> None:
        counts = self.statuses.setdefault(label, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        self.cases += 1


def schema_for(url: str) -> Any:
    served = orjson.loads(urllib.request.urlopen(f"{url}/openapi.json", timeout=30).read())
    # extend() is idempotent: a server that serves the extended document is fuzzed with that document.
    return schemathesis.openapi.from_dict(extend(served))


def plan(operations: list[Any]) -> list[tuple[Any, GenerationMode, dict[str, str], int]]:
    """(operation, mode, fixed path parameters, weight) for every operation: random names, the served
    model's name, and negative cases (where the schema constrains something to break); the heavy
    routes weigh 4, the others 1. The light ones come first: what they leave unused (a route with one
    possible request runs it once) goes to the heavy ones, which come last."""
    runs: list[tuple[Any, GenerationMode, dict[str, str], int]] = []
    for op in operations:
        weight = 4 if op.label in HEAVY else 1
        names = {p.name for p in op.path_parameters}
        served = {n: (VERSION if "version" in n else MODEL) for n in names}
        runs.append((op, GenerationMode.POSITIVE, {}, weight))
        if served and op.label not in NEVER_SERVED:
            runs.append((op, GenerationMode.POSITIVE, served, 2 * weight))
            runs.append((op, GenerationMode.NEGATIVE, served, weight))
        elif op.body or op.query:
            runs.append((op, GenerationMode.NEGATIVE, {}, weight))
    return sorted(runs, key=lambda run: run[0].label in HEAVY)


def known_defect(case: Any, status: int) -> str | None:
    """Which open defect (give each a test of its own below) a 5xx answer is, if any: none now.

    Found and fixed so far: kserve's 501 for ``?model_version=``; a 500 for a name or version
    outside latin-1 in the versioned infer path (rest_fastpath.unversioned).
    """
    return None


def fuzz(url: str, total: int = TOTAL_CASES) -> Findings:
    schema = schema_for(url)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    findings = Findings()
    session = requests.Session()
    auth = {"Authorization": f"Bearer {KEY}"}
    runs = plan(operations)
    for index, (op, mode, fixed, weight) in enumerate(runs):
        left_units = sum(w for *_, w in runs[index:])
        cases = max(1, round((total - findings.cases) * weight / left_units))

        @given(case=op.as_strategy(generation_mode=mode, path_parameters=fixed or None))
        @settings(max_examples=cases, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def one(case: Any) -> None:
            started = time.monotonic()
            try:
                response = case.call(base_url=url, session=session, headers=auth, timeout=CALL_TIMEOUT_S)
                outcome = str(response.status_code)
                if response.status_code >= 500:
                    defect = known_defect(case, response.status_code)
                    line = f"{op.label} -> {outcome} {response.text[:120]!r}: {case.as_curl_command(headers=auth)}"
                    if defect is None:
                        findings.failures.append(line)
                    else:
                        findings.known.setdefault(defect, line)
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                findings.failures.append(f"{op.label} -> no answer in {time.monotonic() - started:.1f}s "
                                         f"({outcome}): {case.as_curl_command(headers=auth)}")
            findings.record(op.label, outcome)

        try:
            one()
        except Unsatisfiable:
            pass  # nothing can break this operation's schema in this mode (e.g. a bare string path)
    return findings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, Any]) -> Iterator[Server]:
    with running(Server(digits["store"], tmp_path_factory.mktemp("fuzz"), model_name=MODEL,
                        env={"TS_ENABLE_MODEL_API": "true", "TS_MODEL_API_KEY": KEY})) as srv:
        yield srv


def test_openapi_describes_our_routes(server: Server) -> None:
    """The served document already holds what extend() adds (serving/openapi.install is wired)."""
    served = orjson.loads(urllib.request.urlopen(f"{server.url}/openapi.json", timeout=30).read())
    paths = served["paths"]
    assert "requestBody" in paths["/v1/models/{model_name}:predict"]["post"]
    assert "/v2/models/{model_name}/versions/{model_version}/infer" in paths
    assert paths["/models"]["post"].get("security"), "the /models writes do not say they need the key"
    assert served == extend(orjson.loads(orjson.dumps(served)))


def test_fuzzing_every_route_gets_no_5xx_and_no_hang(server: Server, digits: dict[str, Any]) -> None:
    findings = fuzz(server.url)
    for defect, reproduction in findings.known.items():  # shown with -rA / -s; each has an xfail test below
        print(f"open defect, {defect}: {reproduction}")
    assert findings.cases >= TOTAL_CASES * 0.8, findings.statuses  # the plan ran (rounding, tiny spaces)
    assert not findings.failures, "\n".join(findings.failures)
    # Still serving, and right: the fuzzing left the model and the server as they were.
    assert http("GET", f"{server.url}/v2/health/ready")[0] == 200
    status, body = http("POST", f"{server.url}/v1/models/{MODEL}:predict", {"instances": digits["instances"][:1]})
    assert status == 200 and len(body["predictions"][0]) == 10, body
    assert server.proc.poll() is None


# Defects the fuzzing found, each kept as a test of its own.
def test_model_version_query_is_answered_without_a_server_error(server: Server) -> None:
    statuses = [http("GET", f"{server.url}/v2/models/{MODEL}?model_version={VERSION}")[0],
                http("GET", f"{server.url}/v2/models/{MODEL}/ready?model_version={VERSION}")[0],
                http("POST", f"{server.url}/v2/models/{MODEL}/infer?model_version={VERSION}", raw=b'""')[0]]
    assert all(status < 500 for status in statuses), statuses


def test_a_version_outside_latin1_in_the_path_is_a_client_error(server: Server) -> None:
    status, _ = http("POST", f"{server.url}/v2/models/{MODEL}/versions/%E2%82%AC/infer", raw=b"{}")
    assert 400 <= status < 500, status
