"""The two leanest Python v2 gRPC fronts we can write, to measure the floor under ours.

  python benchmarks/grpc_fronts.py echo    <port> <torchserve work dir>
  python benchmarks/grpc_fronts.py forward <port> <torchserve work dir>
  python benchmarks/grpc_fronts.py echo-sync <port> <torchserve work dir>

``echo`` parses a ModelInferRequest and answers a fixed ModelInferResponse: the CPU
cost of grpc.aio itself, with no upstream call. ``forward`` sends the first FP32 input
as one row to TorchServe's REST API through our own client (kserve_torchserve.backend.client,
keep-alive HTTP/1.1) and wraps the answer in a response: everything a gRPC front must
do, and nothing else (no kserve servicer, DataPlane, interceptors, codec, metrics or
error mapping). ``echo-sync`` is ``echo`` on grpc's synchronous server (a thread pool with a
thread per call in flight, as a front waiting on TorchServe would need): whether leaving
grpc.aio would lower the floor. benchmarks/grpc_floor.py runs them beside ours and TorchServe's gRPC.
Benchmark code only: it serves the digits MLP's request shape and nothing more.
"""

from __future__ import annotations

import json
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import uvloop
from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kserve_torchserve.backend.auth import TokenSource  # noqa: E402
from kserve_torchserve.backend.client import TorchServeClient  # noqa: E402
from kserve_torchserve.config.properties import LOOPBACK, parse_properties  # noqa: E402


def _response(request: pb.ModelInferRequest, values: list[float]) -> pb.ModelInferResponse:
    return pb.ModelInferResponse(model_name=request.model_name, id=request.id, outputs=[
        pb.ModelInferResponse.InferOutputTensor(name="output-0", datatype="FP32", shape=[1, len(values)],
                                                contents=pb.InferTensorContents(fp32_contents=values))])


class Echo(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return _response(request, [0.1] * 10)


class SyncEcho(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return _response(request, [0.1] * 10)


# A synchronous front blocks a thread per call while TorchServe answers: as many as the
# closed loops' largest concurrency (grpc_floor.py's levels) can be in flight.
SYNC_THREADS = 32


def serve_sync(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SYNC_THREADS))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(SyncEcho(), server)
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    server.start()
    server.wait_for_termination()


class Forward(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, client: TorchServeClient) -> None:
        self.client = client

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        row = {"data": json.dumps(list(request.inputs[0].contents.fp32_contents), separators=(",", ":")).encode()}
        answer = json.loads(await self.client.predict(request.model_name, None, row, 120))
        return _response(request, answer)


def client_for(work_dir: Path) -> TorchServeClient:
    """Our client to the TorchServe that our server (started with ``work_dir``) runs, as that server makes it."""
    props = parse_properties((work_dir / "config.properties").read_text())
    tokens = TokenSource(work_dir / "key_file.json", props["management_address"])
    return TorchServeClient(
        f"{LOOPBACK}:{props['grpc_inference_port']}", f"{LOOPBACK}:{props['grpc_management_port']}", tokens,
        inference_url=props["inference_address"], max_request_bytes=int(props["max_request_size"]))


async def serve(kind: str, port: int, work_dir: Path) -> None:
    servicer: Any = Echo() if kind == "echo" else Forward(client_for(work_dir))
    server = aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("echo", "forward", "echo-sync"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "echo-sync":
        serve_sync(int(sys.argv[2]))
    else:
        uvloop.run(serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
