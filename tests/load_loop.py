"""Clients for tests that change what is served under traffic: a load loop, and v2 gRPC calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests
from kserve import InferenceGRPCClient, InferInput, InferRequest


@dataclass
class LoadLoop:
    """Threads posting one v1 request after another until stopped; every answer's status and version."""

    url: str
    body: Any
    threads: int = 4
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(self.url, json=self.body, headers=self.headers, timeout=60)
                    self.answers.append((response.status_code, response.headers.get("x-model-version")))
                except requests.RequestException:
                    self.answers.append((0, None))

    def __enter__(self) -> "LoadLoop":
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        deadline = time.monotonic() + 30
        while not self.answers and time.monotonic() < deadline:  # it really runs before the change
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # and after it
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=70)

    def statuses(self) -> Counter[int]:
        return Counter(status for status, _ in self.answers)

    def versions(self) -> Counter[str | None]:
        return Counter(version for _, version in self.answers)


def grpc_infer(port: int, model: str, rows: list[list[float]], version: str = "") -> tuple[np.ndarray, str]:
    """(output 0, model_version answered) of a v2 gRPC ModelInfer with FP32 rows."""
    async def call() -> Any:
        tensor = InferInput(name="input-0", shape=[len(rows), len(rows[0])], datatype="FP32")
        tensor.set_data_from_numpy(np.array(rows, dtype=np.float32), binary_data=False)
        request = InferRequest(model_name=model, infer_inputs=[tensor], request_id="t", model_version=version or None)
        async with InferenceGRPCClient(f"127.0.0.1:{port}", timeout=60, retries=0) as client:
            return await client.infer(request)

    response = asyncio.run(call())
    return response.outputs[0].as_numpy(), response.model_version
