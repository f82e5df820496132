"""The soak's requests: what it sends (good and bad, v1, v2 REST, gRPC), and what each must get back.

Every kind has one expected answer (an HTTP status, or a gRPC code name): anything else is
an unexpected status. The bad kinds are client mistakes the README documents, refused at
each layer: at the door (unknown model), by our codec (v2 shape or datatype, a v1 body on
v2, bad JSON, an empty body) and by the handler inside TorchServe (a wrong-length instance).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import orjson
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

TIMEOUT_S = 30.0  # a request with no answer by then counts as "timeout", an unexpected status


@dataclass(frozen=True)
class Kind:
    name: str
    protocol: str  # "rest" or "grpc"
    expected: str  # "200", "400", ... or a gRPC code name ("OK", "INVALID_ARGUMENT")
    weight: int  # share of the traffic, in percent
    path: str = ""  # REST
    body: bytes = b""  # REST
    message: Any = None  # gRPC ModelInferRequest

    @property
    def good(self) -> bool:
        return self.expected in ("200", "OK")


def _v2(data: list[float], shape: list[int], datatype: str = "FP32") -> bytes:
    return orjson.dumps({"inputs": [{"name": "pixels", "shape": shape, "datatype": datatype, "data": data}]})


def _grpc(model: str, data: list[float], shape: list[int]) -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=shape,
                                                   contents=pb.InferTensorContents(fp32_contents=data))
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def kinds(model: str, instance: list[float]) -> list[Kind]:
    """89% good (v1, v2 REST, gRPC alike), 11% bad of eleven kinds, 1% each."""
    v1, v2 = f"/v1/models/{model}:predict", f"/v2/models/{model}/infer"
    short = [1.0, 2.0]
    return [
        Kind("v1 good", "rest", "200", 30, v1, orjson.dumps({"instances": [instance]})),
        Kind("v2 good", "rest", "200", 30, v2, _v2(instance, [1, len(instance)])),
        Kind("grpc good", "grpc", "OK", 29, message=_grpc(model, instance, [1, len(instance)])),
        Kind("v1 bad json", "rest", "400", 1, v1, b'{"instances": ['),
        Kind("v1 empty body", "rest", "400", 1, v1, b""),
        Kind("v1 handler rejects", "rest", "400", 1, v1, orjson.dumps({"instances": [short]})),
        Kind("v1 unknown model", "rest", "404", 1, "/v1/models/no-such-model:predict",
             orjson.dumps({"instances": [instance]})),
        Kind("v2 shape misfit", "rest", "400", 1, v2, _v2(instance, [1, len(instance) + 1])),
        Kind("v2 unknown datatype", "rest", "400", 1, v2, _v2(short, [1, 2], "FLOAT99")),
        Kind("v2 handler rejects", "rest", "400", 1, v2, _v2(short, [1, 2])),
        Kind("v1 body on v2", "rest", "400", 1, v2, orjson.dumps({"instances": [instance]})),
        Kind("grpc shape misfit", "grpc", "INVALID_ARGUMENT", 1, message=_grpc(model, instance, [1, len(instance) + 1])),
        Kind("grpc handler rejects", "grpc", "INVALID_ARGUMENT", 1, message=_grpc(model, short, [1, 2])),
        Kind("grpc unknown model", "grpc", "NOT_FOUND", 1, message=_grpc("no-such-model", instance, [1, len(instance)])),
    ]


class Client:
    """At most ``concurrency`` REST and ``concurrency`` gRPC requests in flight (more wait their turn,
    and the wait counts in their latency), on REST connections kept open for the whole run.

    Why the bounds: the server keeps one idle connection to TorchServe per request it once had in
    flight at the same time, so its open fds (and Java's) follow the client's peak concurrency.
    Bounded, and reached once before the soak (``prewarm``), they stay flat unless something leaks.
    """

    def __init__(self, http_port: int, grpc_port: int, concurrency: int) -> None:
        self.concurrency = concurrency
        self._base = f"http://127.0.0.1:{http_port}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=3600),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self._grpc_slots = asyncio.Semaphore(concurrency)

    async def send(self, kind: Kind) -> tuple[str, float]:
        """(outcome, seconds): the status or code name, "timeout", or the client error's name."""
        started = time.perf_counter()
        try:
            if kind.protocol == "grpc":
                try:
                    async with self._grpc_slots:
                        await self._stub.ModelInfer(kind.message, timeout=TIMEOUT_S)
                    outcome = "OK"
                except grpc.RpcError as err:
                    code = err.code()
                    outcome = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else code.name
            else:
                async with self._session.post(self._base + kind.path, data=kind.body,
                                              headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    outcome = str(response.status)
        except asyncio.TimeoutError:
            outcome = "timeout"
        except (aiohttp.ClientError, OSError) as exc:
            outcome = type(exc).__name__
        return outcome, time.perf_counter() - started

    async def prewarm(self, good: list[Kind], rounds: int = 3) -> None:
        """Both bounds reached at once, a few times: every connection the soak may need is open."""
        rest = [k for k in good if k.protocol == "rest"]
        grpc_kinds = [k for k in good if k.protocol == "grpc"]
        for _ in range(rounds):
            await asyncio.gather(*(self.send(rest[i % len(rest)]) for i in range(2 * self.concurrency)),
                                 *(self.send(grpc_kinds[i % len(grpc_kinds)]) for i in range(2 * self.concurrency)))

    async def close(self) -> None:
        await self._session.close()
        await self._channel.close()


def chooser(all_kinds: list[Kind], seed: int) -> Any:
    """A seeded draw of kinds by weight: the same sequence every run."""
    rng = random.Random(seed)
    population = [k for k in all_kinds if k.weight > 0]
    weights = [k.weight for k in population]
    return lambda: rng.choices(population, weights)[0]
