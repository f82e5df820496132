"""Dynamic batching that really batches, workers and threads, with the real TorchServe."""

from __future__ import annotations

import concurrent.futures
import json
import os
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from kserve_torchserve.config.cpus import available_cpus
from kserve_torchserve.config.properties import parse_properties
from tests.helpers import ASSETS, Server, build_mar, http, running

pytestmark = pytest.mark.integration


# Every test runs against both ways of batching: ours in front of TorchServe (the default,
# backend/batcher.py), and TorchServe's own (--torchserve_batching); the handler must see the same batches.
@pytest.fixture(scope="module", params=["torchserve", "front"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("batch-store")
    build_mar(ASSETS / "batch_echo_handler.py", "echo", store)
    env = {"TS_BATCH_SIZE": "8", "TS_MAX_BATCH_DELAY": "300", "TS_DEFAULT_WORKERS_PER_MODEL": "2"}
    env_without_threads = {k: v for k, v in os.environ.items()
                           if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    args = [] if request.param == "front" else ["--torchserve_batching"]
    with running(Server(store, tmp_path_factory.mktemp("batch-server"), env={**env_without_threads, **env},
                        args=args)) as srv:
        srv.front_batching = request.param == "front"  # type: ignore[attr-defined]
        yield srv


def _predict(server: Server, instances: list[Any]) -> list[dict[str, Any]]:
    status, body = http("POST", f"{server.url}/v1/models/echo:predict", {"instances": instances})
    assert status == 200, body
    return body["predictions"]  # type: ignore[no-any-return]


def test_one_request_with_many_instances_is_batched_in_order(server: Server) -> None:
    answers = _predict(server, [[i] for i in range(8)])
    assert [a["echo"] for a in answers] == [[i] for i in range(8)]
    assert max(a["batch_size"] for a in answers) > 1


def test_concurrent_requests_are_batched_and_answered_to_the_right_caller(server: Server) -> None:
    def call(i: int) -> tuple[int, list[dict[str, Any]]]:
        return i, _predict(server, [{"caller": i}])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    for i, (answer,) in results:
        assert answer["echo"] == {"caller": i}
    assert max(answer["batch_size"] for _, (answer,) in results) > 1


def test_a_row_refused_by_the_handler_fails_only_its_own_request(server: Server) -> None:
    """A batched handler's per-row status (context.set_response_status(..., idx)) reaches
    the one caller it concerns; the callers batched with it get their answers."""
    def call(i: int) -> tuple[int, Any]:
        instance = {"reject": 7} if i == 3 else {"caller": i}
        return http("POST", f"{server.url}/v1/models/echo:predict", {"instances": [instance]})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    for i, (status, body) in enumerate(results):
        if i == 3:
            assert status == 422, body
            assert "rejected: 7" in body["error"]
        else:
            assert status == 200, body
            assert body["predictions"][0]["echo"] == {"caller": i}
    assert max(body["predictions"][0]["batch_size"] for i, (_, body) in enumerate(results) if i != 3) > 1


def test_workers_and_batching_reach_torchserve(server: Server) -> None:
    props = parse_properties((server.work_dir / "config.properties").read_text())
    key = json.loads((server.work_dir / "key_file.json").read_text())["management"]["key"]
    request = urllib.request.Request(f"{props['management_address']}/models/echo",
                                     headers={"Authorization": f"Bearer {key}"})
    (description,) = json.loads(urllib.request.urlopen(request, timeout=10).read())
    front = server.front_batching  # type: ignore[attr-defined]
    # Batched in front, each TorchServe request is a batch already: TorchServe must not wait for more.
    assert description["batchSize"] == 8 and description["maxBatchDelay"] == (0 if front else 300)
    assert (description["minWorkers"], description["maxWorkers"], len(description["workers"])) == (2, 2, 2)
    assert ("workers 2 (min 2, max 2), batch size 8, max batch delay 300 ms"
            + (" (batched in front)" if front else "")) in server.log()
    assert "device CPU (no GPU assigned)" in server.log()


def test_batches_never_exceed_the_batch_size_and_every_caller_gets_its_own_answers(server: Server) -> None:
    """32 callers at once, some with several instances: every batch the handler sees holds at most 8 client
    requests (TorchServe counts requests, not instances), and each caller gets exactly its instances back."""
    def call(i: int) -> tuple[int, list[dict[str, Any]]]:
        return i, _predict(server, [{"caller": i, "n": n} for n in range(1 + i % 3)])

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(64)))
    for i, answers in results:
        assert [a["echo"] for a in answers] == [{"caller": i, "n": n} for n in range(1 + i % 3)]
    sizes = [a["batch_size"] for _, answers in results for a in answers]
    assert max(sizes) > 1 and max(sizes) <= 8 * 3  # at most 8 requests of at most 3 instances


def test_v2_rest_and_grpc_callers_batched_together_each_get_their_own_answers(server: Server) -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    def rest(i: int) -> Any:
        body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [i, -i]}]}
        status, answer = http("POST", f"{server.url}/v2/models/echo/infer", body)
        assert status == 200, answer
        return [json.loads(item)["echo"] for item in answer["outputs"][0]["data"]]

    def rpc(i: int) -> Any:
        tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[1],
                                                       contents=pb.InferTensorContents(int64_contents=[i]))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                pb.ModelInferRequest(model_name="echo", inputs=[tensor]), timeout=60)
        return [json.loads(item)["echo"] for item in answer.outputs[0].contents.bytes_contents]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        rests = [pool.submit(rest, i) for i in range(16)]
        rpcs = [pool.submit(rpc, 100 + i) for i in range(16)]
        assert [f.result() for f in rests] == [[i, -i] for i in range(16)]
        assert [f.result() for f in rpcs] == [[100 + i] for i in range(16)]


def test_torch_threads_do_not_oversubscribe_the_cores(server: Server) -> None:
    (answer,) = _predict(server, [0])
    assert answer["threads"] == max(1, available_cpus() // 2)
    assert f"torch threads per worker={max(1, available_cpus() // 2)} (OpenMP spin count 10000)" in server.log()


def test_idle_torch_threads_spin_briefly(server: Server) -> None:
    """The worker's OpenMP spins 10,000 rounds, not libgomp's 300,000, before an idle thread sleeps
    (config/cpus.py: the default held a core between batches)."""
    (answer,) = _predict(server, [0])
    assert answer["spin"] == "10000"
