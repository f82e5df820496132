"""TorchServe's gRPC failures -> the status our clients see (the statuses are TorchServe 0.12's)."""

from __future__ import annotations

import grpc
import pytest

from kserve_torchserve.client import map_rpc_error


def _err(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    "code,details,status,fragment",
    [
        (grpc.StatusCode.INTERNAL, "Model not found: m\norg.pytorch.serve.archive.model.ModelNotFoundException", 404,
         "Model not found: m"),
        (grpc.StatusCode.INTERNAL, "Model version: 9 does not exist for model: m\n"
         "org.pytorch.serve.archive.model.ModelVersionNotFoundException", 404, "does not exist"),
        (grpc.StatusCode.INVALID_ARGUMENT, "expected 64 numbers\norg.pytorch.serve.http.InternalServerException", 400,
         "rejected the input: expected 64 numbers"),
        (grpc.StatusCode.UNAVAILABLE, "Prediction failed\norg.pytorch.serve.http.InternalServerException", 500,
         "handler raised"),
        (grpc.StatusCode.INTERNAL, 'Model "m" has no worker to serve inference request. Please use scale workers API',
         503, "unavailable or overloaded"),
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", 503, "retry later"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", 504, "did not answer in time"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max", 413, "TS_MAX_REQUEST_SIZE"),
        (grpc.StatusCode.INTERNAL, "boom", 500, "model m failed: boom"),
    ],
)
def test_statuses_and_messages(code: grpc.StatusCode, details: str, status: int, fragment: str) -> None:
    error = map_rpc_error(_err(code, details), "m")
    assert error.http_status == status
    assert fragment in error.message
    assert "org.pytorch.serve" not in error.message


def test_worker_death_after_the_response_timeout_is_a_timeout() -> None:
    err = _err(grpc.StatusCode.INTERNAL, "Worker died.\norg.pytorch.serve.http.InternalServerException")
    timeout = map_rpc_error(err, "m", elapsed_s=2.1, response_timeout_s=2)
    assert timeout.http_status == 504 and "responseTimeout of 2s" in timeout.message
    crash = map_rpc_error(err, "m", elapsed_s=0.3, response_timeout_s=2)
    assert crash.http_status == 500 and "worker died" in crash.message
