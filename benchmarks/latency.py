"""Start-up time and sequential (concurrency 1) latency, side by side in one run.

Systems, same model (the digits MLP) and the same one-instance payload:
  ours-v1-rest, ours-v2-rest, ours-v2-grpc   this runtime
  ts-rest, ts-grpc                           the same TorchServe, called directly
  in-process                                 the model's forward + softmax in this process (the limit)
Prints a table with p50/p99 and the added p50 over TorchServe direct; writes
benchmarks/results/<date>-latency.json.  Usage: .venv/bin/python benchmarks/latency.py [-n 2000]
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import grpc
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kserve.protocol.grpc import grpc_predict_v2_pb2 as v2pb  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as v2grpc  # noqa: E402

from benchmarks.run import RESULTS, add_tag_option  # noqa: E402
from kserve_torchserve.backend import grpc_stubs  # noqa: E402
from tests.helpers import Server, digits_example  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def measure(call: Callable[[], None], n: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def rest_caller(port: int, path: str, body: bytes, headers: dict[str, str]) -> Callable[[], None]:
    conn = http.client.HTTPConnection("127.0.0.1", port)  # one keep-alive connection, like a real client

    def call() -> None:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {payload[:200]!r}")

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="timed requests per system")
    parser.add_argument("--warmup", type=int, default=2000)  # Java compiles its hot paths meanwhile
    add_tag_option(parser)
    args = parser.parse_args()

    build = digits_example()
    instance = json.loads((build / "request.json").read_text())["instances"][0]

    results: dict[str, object] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "n": args.n}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        server = Server(build / "model-store", Path(tmp), model_name="digits")
        try:
            server.wait_ready()
            results["startup_to_ready_s"] = round(time.perf_counter() - started, 2)
            props, key = server.torchserve()
            ts_rest_port = int(props["inference_address"].rsplit(":", 1)[1])
            ts_grpc = f"127.0.0.1:{props['grpc_inference_port']}"

            v1_body = json.dumps({"instances": [instance]}).encode()
            v2_body = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                                              "data": instance}]}).encode()
            json_headers = {"Content-Type": "application/json"}
            stubs = grpc_stubs.load()
            ts_stub = stubs.inference_pb2_grpc.InferenceAPIsServiceStub(grpc.insecure_channel(ts_grpc))
            ts_request = stubs.inference_pb2.PredictionsRequest(
                model_name="digits", input={"data": json.dumps(instance).encode()})
            auth = (("authorization", f"Bearer {key}"),)
            ours_stub = v2grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
            v2_request = v2pb.ModelInferRequest(model_name="digits", inputs=[v2pb.ModelInferRequest.InferInputTensor(
                name="pixels", shape=[1, 64], datatype="FP32",
                contents=v2pb.InferTensorContents(fp32_contents=instance))])

            model = torch.jit.load(str(build / "model.pt"))  # type: ignore[no-untyped-call]
            torch.set_num_threads(1)  # as a TorchServe worker on this machine would
            row = json.dumps(instance).encode()

            def in_process() -> None:
                with torch.inference_mode():
                    torch.softmax(model(torch.tensor([json.loads(row)], dtype=torch.float32)), dim=1).tolist()

            systems: dict[str, Callable[[], None]] = {
                "ours-v1-rest": rest_caller(server.http_port, "/v1/models/digits:predict", v1_body, json_headers),
                "ours-v2-rest": rest_caller(server.http_port, "/v2/models/digits/infer", v2_body, json_headers),
                "ours-v2-grpc": lambda: ours_stub.ModelInfer(v2_request, timeout=30),
                "ts-rest": rest_caller(ts_rest_port, "/predictions/digits", json.dumps(instance).encode(),
                                       {**json_headers, "Authorization": f"Bearer {key}"}),
                "ts-grpc": lambda: ts_stub.Predictions(ts_request, metadata=auth, timeout=30),
                "in-process": in_process,
            }
            latency = {name: measure(call, args.n, args.warmup) for name, call in systems.items()}
        finally:
            server.stop()
    results["latency"] = latency
    added_p50: dict[str, float] = {
        "ours-v1-rest vs ts-rest": latency["ours-v1-rest"]["p50_ms"] - latency["ts-rest"]["p50_ms"],
        "ours-v2-rest vs ts-rest": latency["ours-v2-rest"]["p50_ms"] - latency["ts-rest"]["p50_ms"],
        "ours-v2-grpc vs ts-grpc": latency["ours-v2-grpc"]["p50_ms"] - latency["ts-grpc"]["p50_ms"],
    }
    results["added_p50_ms"] = added_p50
    print(f"start-up to ready: {results['startup_to_ready_s']} s")
    print(f"{'system':<14} {'p50 ms':>8} {'p99 ms':>8}")
    for name, stats in latency.items():
        print(f"{name:<14} {stats['p50_ms']:8.3f} {stats['p99_ms']:8.3f}")
    for name, added in added_p50.items():
        print(f"added p50, {name}: {added:+.3f} ms")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.date.today().isoformat()}-latency{args.tag}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
