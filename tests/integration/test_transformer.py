"""A kserve.Model transformer (the real kserve SDK and ModelServer) in front of our server.

The transformer (tests/assets/transformer/digits_transformer.py) takes 8x8 PNG images, turns
them into the 64 pixel values the digits model takes and calls us with ``--predictor_host``
over each protocol KServe offers: v1, v2 REST and ``--predictor_protocol grpc-v2``. What it
answers must equal what we answer when called directly with the same pixels.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest

from kserve_torchserve.backend.ports import free_ports
from tests.assets.transformer import digits_transformer
from tests.helpers import ROOT, Server, http, running

pytestmark = pytest.mark.integration
N = 12  # held-out images per request


@pytest.fixture(scope="module")
def server(digits: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(Server(digits["store"], tmp_path_factory.mktemp("transformer-predictor"), model_name="digits")) as srv:
        yield srv


class Transformer:
    """The transformer as KServe runs it: python -m <module> --model_name --predictor_host --predictor_protocol."""

    def __init__(self, predictor_host: str, protocol: str, tmp: Path) -> None:
        self.http_port, self.grpc_port = free_ports(2)
        self.log_path = tmp / f"transformer-{protocol}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", digits_transformer.__name__, "--model_name", "digits",
             "--predictor_host", predictor_host, "--predictor_protocol", protocol,
             "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port)],
            cwd=str(ROOT), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def predict(self, instances: list[Any]) -> tuple[int, Any]:
        return http("POST", f"http://127.0.0.1:{self.http_port}/v1/models/digits:predict", {"instances": instances})

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"transformer exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if http("GET", f"http://127.0.0.1:{self.http_port}/v1/models/digits", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"transformer not ready after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        finally:
            self._log.close()


def _direct_v1(server: Server, rows: list[list[float]]) -> list[list[float]]:
    status, body = http("POST", f"{server.url}/v1/models/digits:predict", {"instances": rows})
    assert status == 200, body
    return body["predictions"]  # type: ignore[no-any-return]


def _direct_v2(server: Server, rows: list[list[float]]) -> np.ndarray:
    status, body = http("POST", f"{server.url}/v2/models/digits/infer",
                        {"inputs": [{"name": "pixels", "shape": [len(rows), 64], "datatype": "FP32",
                                     "data": [v for row in rows for v in row]}]})
    assert status == 200, body
    return np.array(body["outputs"][0]["data"]).reshape(len(rows), 10)


def _direct_grpc(server: Server, rows: list[list[float]]) -> np.ndarray:
    async def call() -> np.ndarray:
        tensor = InferInput(name="pixels", shape=[len(rows), 64], datatype="FP32")
        tensor.set_data_from_numpy(np.array(rows, dtype=np.float32))
        async with InferenceGRPCClient(f"127.0.0.1:{server.grpc_port}", timeout=60, retries=0) as client:
            response = await client.infer(InferRequest(model_name="digits", infer_inputs=[tensor]))
        return np.asarray(response.outputs[0].as_numpy())

    return asyncio.run(call())


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc-v2"])
def test_transformer_answers_equal_ours(protocol: str, server: Server, digits: dict[str, Any],
                                        tmp_path: Path) -> None:
    rows = digits["instances"][:N]
    images = [{"image_b64": digits_transformer.png_b64(row)} for row in rows]
    assert [digits_transformer.pixels(i["image_b64"]) for i in images] == rows  # the PNGs carry the same pixels
    host = f"127.0.0.1:{server.grpc_port if protocol == 'grpc-v2' else server.http_port}"
    transformer = Transformer(host, protocol, tmp_path)
    try:
        transformer.wait_ready()
        status, body = transformer.predict(images)
        assert status == 200, f"{body}\n{transformer.log_path.read_text()[-3000:]}"
    finally:
        transformer.stop()
    if protocol == "v1":
        direct = np.array(_direct_v1(server, rows))
    else:
        direct = _direct_v2(server, rows) if protocol == "v2" else _direct_grpc(server, rows)
    np.testing.assert_allclose(body["predictions"], direct, atol=1e-6)
    np.testing.assert_allclose(body["predictions"], _direct_v1(server, rows), atol=1e-6)
