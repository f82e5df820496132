"""TorchServe's failures -> the status our clients see (bodies and statuses are TorchServe 0.12's)."""

from __future__ import annotations

import json

import grpc
import pytest

from kserve_torchserve.backend.failures import map_rest_error, map_rpc_error


def _ts(status: int, message: str) -> bytes:
    return json.dumps({"code": status, "type": "InternalServerException", "message": message}).encode()


@pytest.mark.parametrize(
    "status,body,expected,fragment",
    [
        (404, _ts(404, "Model not found: m"), 404, "Model not found: m"),
        (404, _ts(404, "Model version: 9 does not exist for model: m"), 404, "does not exist"),
        (503, _ts(503, "Prediction failed"), 500, "handler raised"),
        (503, _ts(503, "number of batch response mismatched"), 500, "one answer per request"),
        (503, _ts(503, "Invalid model predict output"), 500, "handler answered wrongly"),
        (503, _ts(503, "Model m is shutting down"), 503, "retry later"),
        (507, _ts(507, "Out of resources"), 507, "out of memory"),
        (413, b"", 413, "TS_MAX_REQUEST_SIZE"),
        (408, _ts(408, "Request timed out"), 504, "did not answer in time"),
        (400, _ts(400, "expected 64 numbers"), 400, "model m: expected 64 numbers"),
        (422, b"rejected: too dark", 422, "model m: rejected: too dark"),  # a handler's own status for its row
        (500, _ts(500, "boom"), 500, "model m: boom"),
        (302, b"", 500, "unexpected HTTP status 302"),
    ],
)
def test_rest_statuses_and_messages(status: int, body: bytes, expected: int, fragment: str) -> None:
    error = map_rest_error(status, body, "m")
    assert error.http_status == expected
    assert fragment in error.message


def test_worker_death_after_the_response_timeout_is_a_timeout() -> None:
    body = _ts(500, "Worker died.")
    timeout = map_rest_error(500, body, "m", elapsed_s=2.1, response_timeout_s=2)
    assert timeout.http_status == 504 and "responseTimeout of 2s" in timeout.message
    crash = map_rest_error(500, body, "m", elapsed_s=0.3, response_timeout_s=2)
    assert crash.http_status == 500 and "worker died" in crash.message


def test_a_worker_killed_by_sigkill_is_out_of_memory_never_413() -> None:
    # TorchServe's WorkerThread answers 413 for a worker that exited with 137; its RestJob remaps it to 507.
    error = map_rest_error(507, _ts(507, "Worker died."), "m", elapsed_s=0.3, response_timeout_s=2)
    assert error.http_status == 507 and "out of memory" in error.message and "SIGKILL" in error.message
    assert error.status_code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_full_queue_is_503_with_retry_after_and_resource_exhausted() -> None:
    body = _ts(503, 'Model "m" Version 1.0" has no worker to serve inference request. Please use scale workers API')
    error = map_rest_error(503, body, "m")
    assert (error.http_status, error.retry_after_s, error.status_code) == (503, 1, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "queue" in error.message and "TS_JOB_QUEUE_SIZE" in error.message


def test_a_handler_without_explain_is_not_implemented() -> None:
    error = map_rest_error(503, _ts(503, "Prediction failed"), "m", explaining=True)
    assert error.http_status == 501 and "explain_handle" in error.message


def _err(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    "code,details,status,fragment",
    [
        (grpc.StatusCode.INTERNAL, "Model not found: m\norg.pytorch.serve.archive.model.ModelNotFoundException", 404,
         "Model not found: m"),
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", 503, "retry later"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", 504, "did not answer in time"),
        (grpc.StatusCode.INTERNAL, "boom", 500, "boom"),
    ],
)
def test_management_call_statuses(code: grpc.StatusCode, details: str, status: int, fragment: str) -> None:
    error = map_rpc_error(_err(code, details), "m")
    assert error.http_status == status
    assert fragment in error.message
    assert "org.pytorch.serve" not in error.message




def test_a_worker_death_when_the_oom_killer_just_struck_is_out_of_memory() -> None:
    # TorchServe read the worker's exit status before Java reaped it, and said 500.
    error = map_rest_error(500, _ts(500, "Worker died."), "m", elapsed_s=0.3, response_timeout_s=2,
                           oom_recent=lambda: True)
    assert error.http_status == 507 and "out of memory" in error.message
