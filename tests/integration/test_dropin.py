"""Drop-in for KServe's stock runtime: exactly the argv and environment KServe gives its TorchServe image.

KServe's ClusterServingRuntime ``kserve-torchserve`` (config/runtimes/kserve-torchserve.yaml in
kserve/kserve) runs its image with the args ``torchserve --start
--model-store=/mnt/models/model-store --ts-config=/mnt/models/config/config.properties`` and
the env ``TS_SERVICE_ENVELOPE={{.Labels.serviceEnvelope}}``; its controller adds
``PROTOCOL_VERSION`` (SetTorchServeDefaults; v2 and grpc-v2 set the label to ``kservev2``).
The storage is KServe's layout: ``config/config.properties`` with a model_snapshot, written as
pytorch/serve's KServe examples write it, and ``model-store/*.mar``. Only the ports are added
after the stock arguments: 8080/8081 may be taken where tests run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from kserve_torchserve.backend.ports import free_ports
from kserve_torchserve.config.properties import parse_properties
from tests.helpers import Server, http

pytestmark = pytest.mark.integration

# pytorch/serve kubernetes/kserve/kf_request_json/v2/mnist/README.md's config.properties for
# KServe, with our model in model_snapshot: the addresses, model_store and enable_envvars_config
# are TorchServe-side keys we own; service_envelope would break every request if it reached TorchServe.
CONFIG_PROPERTIES = """\
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_envvars_config=true
install_py_dep_per_model=true
enable_metrics_api=true
service_envelope=kservev2
metrics_mode=prometheus
NUM_WORKERS=1
number_of_netty_threads=4
job_queue_size=10
model_store=/mnt/models/model-store
model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"digits":{"1.0":{"defaultVersion":true,\
"marName":"digits.mar","minWorkers":1,"maxWorkers":1,"batchSize":4,"maxBatchDelay":20,"responseTimeout":60}}}}
"""


class StockServer(Server):
    """tests.helpers.Server started with KServe's stock argv instead of our flags; stopped the same way."""

    def __init__(self, stock_argv: list[str], tmp: Path, env: dict[str, str]) -> None:
        self.stock_argv = stock_argv
        self.http_port, self.grpc_port = free_ports(2)
        self.work_dir = tmp / "tmp"  # no --work_dir in the stock argv: ours is a temp dir under TMPDIR
        self.work_dir.mkdir()
        self.log_path = tmp / "server.log"
        self.command = [sys.executable, "-m", "kserve_torchserve", *stock_argv,
                        "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "TMPDIR": str(self.work_dir), **env}, cwd=str(tmp))


@pytest.fixture(scope="module")
def server(digits: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockServer]:
    tmp = tmp_path_factory.mktemp("dropin")
    storage = tmp / "models"  # what KServe's storage initializer puts at /mnt/models
    (storage / "config").mkdir(parents=True)
    (storage / "model-store").mkdir()
    shutil.copy(digits["store"] / "digits.mar", storage / "model-store" / "digits.mar")
    (storage / "config" / "config.properties").write_text(CONFIG_PROPERTIES)
    stock_argv = ["torchserve", "--start", f"--model-store={storage}/model-store",
                  f"--ts-config={storage}/config/config.properties"]
    srv = StockServer(stock_argv, tmp, {"PROTOCOL_VERSION": "v2", "TS_SERVICE_ENVELOPE": "kservev2"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_the_stock_argv_is_run_as_written(server: StockServer) -> None:
    storage = server.work_dir.parent / "models"
    assert server.stock_argv == ["torchserve", "--start", f"--model-store={storage}/model-store",
                                 f"--ts-config={storage}/config/config.properties"]
    assert server.command[3:7] == server.stock_argv  # right after `python -m kserve_torchserve`
    log = server.log()
    assert "KServe's TorchServe command line understood" in log
    assert "PROTOCOL_VERSION=v2 accepted" in log
    assert "TS_SERVICE_ENVELOPE=kservev2 ignored" in log


def test_torchserve_gets_none_of_kserves_envelopes(server: StockServer) -> None:
    """Neither TS_SERVICE_ENVELOPE nor config.properties' service_envelope may reach TorchServe: its workers
    would unwrap our requests as KServe bodies (config/properties.py owns service_envelope)."""
    written = list(server.work_dir.glob("kserve-torchserve-*/config.properties"))
    assert len(written) == 1
    props = parse_properties(written[0].read_text())
    assert props.get("service_envelope") not in ("kserve", "kservev2"), "KServe's envelope reached TorchServe"
    assert props["install_py_dep_per_model"] == "true"  # the user's other keys do reach it
    assert props["inference_address"].startswith("http://127.0.0.1:")  # ours, not the file's 0.0.0.0:8085


def test_predicts_over_v1_and_v2(server: StockServer, digits: dict[str, Any],
                                 digits_reference: list[list[float]]) -> None:
    rows = digits["instances"][:5]
    status, body = http("POST", f"{server.url}/v1/models/digits:predict", {"instances": rows})
    assert status == 200, f"{body}\n{server.log()[-3000:]}"
    np.testing.assert_allclose(body["predictions"], digits_reference[:5], atol=1e-6)
    status, body = http("POST", f"{server.url}/v2/models/digits/infer",
                        {"inputs": [{"name": "pixels", "shape": [5, 64], "datatype": "FP32",
                                     "data": [v for row in rows for v in row]}]})
    assert status == 200, body
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(5, 10), digits_reference[:5], atol=1e-6)
    status, models = http("GET", f"{server.url}/v1/models")
    assert status == 200 and models["models"] == ["digits"]  # named by model_snapshot, no --model_name


def test_model_snapshot_settings_are_registered(server: StockServer) -> None:
    assert "model digits v1.0: handler handler.py" in server.log()
    line = next(ln for ln in server.log().splitlines() if "model digits v1.0: handler" in ln)
    assert "batch size 4" in line and "max batch delay 20 ms" in line and "response timeout 60 s" in line, line
