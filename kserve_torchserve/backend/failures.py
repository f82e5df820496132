"""TorchServe's failures -> the UpstreamError a KServe client gets: status, and a message saying what to do.

What TorchServe 0.12 answers (its frontend's words, which this module matches):

- the handler raised: 503 ``Prediction failed`` (a bug in the handler: 500 here);
- the handler answered the wrong number of rows, or not a list: 503 ``number of batch
  response mismatched`` / ``Invalid model predict output`` (500 here: the handler's bug);
- the handler ran out of memory (``MemoryError``, CUDA OOM): 507 ``Out of resources``;
- a worker process died: ``Worker died.`` with 507 when it was SIGKILLed (exit code 137:
  WorkerThread reports it as 413, which RestJob remaps to 507), else 500 (also for a SIGKILL
  whose exit status it read too early: ``oom_recent``, see oom.py, tells those); TorchServe also
  kills a worker that exceeds its responseTimeout, and says only this, so the time taken
  tells a timeout (504) from a crash;
- the model's job queue is full (``job_queue_size``): 503 ``... has no worker to serve
  inference request``: overload, so 503 with Retry-After, and RESOURCE_EXHAUSTED on gRPC.
"""

from __future__ import annotations

import json
from typing import Callable

import grpc

from ..errors import RETRY_AFTER_S, UpstreamError

_QUEUE_FULL = "has no worker to serve inference request"
_HANDLER_ANSWER = ("number of batch response mismatched", "Invalid model predict output")


def _clean(details: str | None) -> str:
    # TorchServe appends the Java exception class on a second line; users need the first.
    return (details or "").split("\norg.pytorch.serve", 1)[0].strip()


def map_rpc_error(err: grpc.aio.AioRpcError, model: str) -> UpstreamError:
    """A failed gRPC management call (ping, describe) -> UpstreamError."""
    code, message = err.code(), _clean(err.details())
    if "ModelNotFoundException" in (err.details() or "") or code == grpc.StatusCode.NOT_FOUND:
        return UpstreamError(404, f"TorchServe does not serve model {model}: {message}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamError(504, f"TorchServe did not answer in time about model {model}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.PERMISSION_DENIED):
        return UpstreamError(503, f"TorchServe is unavailable, retry later: {message or code.name}",
                             retry_after_s=RETRY_AFTER_S)
    return UpstreamError(500, f"TorchServe failed about model {model}: {message or code.name}")


def _rest_message(body: bytes) -> str:
    # TorchServe's own errors are {"code", "type", "message"}; a handler that set an error
    # status (context.set_response_status) answers with whatever it returned.
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return text.strip()[:500]


def out_of_memory(model: str, killed: bool) -> UpstreamError:
    if killed:
        return UpstreamError(
            507, f"model {model} is out of memory: its worker was killed with SIGKILL (exit code 137), as the "
            "kernel's OOM killer does; give the pod more memory or the model fewer workers or smaller batches "
            "(TorchServe restarts the worker)")
    return UpstreamError(507, f"model {model} is out of memory: its handler could not allocate what it needed; "
                              "send smaller requests or give it more memory")


def map_rest_error(
    status: int, body: bytes, model: str, elapsed_s: float = 0.0, response_timeout_s: float | None = None,
    explaining: bool = False, oom_recent: Callable[[], bool] = lambda: False,
) -> UpstreamError:
    """TorchServe's REST status and body -> the error our clients get, with what to do."""
    message = _rest_message(body)
    if status == 400 and body.startswith(b'{"code":400,"type":"InvalidInput"'):
        return UpstreamError(400, message)  # our envelope refused the client's body: its words, as kserve's
    if message == "Prediction failed":
        if explaining:
            return UpstreamError(
                501, f"model {model} cannot explain: its handler has no explain support or failed while explaining "
                "(implement explain_handle / get_insights in the handler; see TorchServe's MODEL_LOG lines)"
            )
        return UpstreamError(500, f"model {model} failed: its handler raised an error (see TorchServe's MODEL_LOG lines)")
    if message in _HANDLER_ANSWER:
        return UpstreamError(500, f"model {model} failed: its handler answered wrongly ({message}); it must return "
                                  "a list with one answer per request of the batch")
    if message == "Worker died.":
        if response_timeout_s is not None and elapsed_s >= response_timeout_s:
            return UpstreamError(
                504, f"model {model} did not answer within its responseTimeout of {response_timeout_s:.0f}s "
                "(TorchServe restarted the worker); raise TS_DEFAULT_RESPONSE_TIMEOUT or send smaller requests"
            )
        if status == 507 or oom_recent():
            return out_of_memory(model, killed=True)
        return UpstreamError(500, f"model {model} failed: its TorchServe worker died (see TorchServe's log); "
                                  "TorchServe restarts it")
    if status == 507:  # MemoryError or CUDA OOM in the handler, or the JVM's own OutOfMemoryError
        return out_of_memory(model, killed=False)
    if status == 404:
        return UpstreamError(404, f"TorchServe does not serve model {model}: {message}")
    if status == 413:
        return UpstreamError(
            413, f"request for model {model} is too large for TorchServe: {message or 'request entity too large'}; "
            "raise TS_MAX_REQUEST_SIZE / TS_MAX_RESPONSE_SIZE or send smaller inputs"
        )
    if status == 503 and _QUEUE_FULL in message:
        return UpstreamError(503, f"model {model} is overloaded: its queue in TorchServe is full (TS_JOB_QUEUE_SIZE); "
                                  "retry later", retry_after_s=RETRY_AFTER_S, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    if status == 503:
        return UpstreamError(503, f"model {model} is unavailable, retry later: {message}", retry_after_s=RETRY_AFTER_S)
    if status in (408, 504):
        return UpstreamError(
            504, f"model {model} did not answer in time: {message}; "
            "raise the model's responseTimeout (TS_DEFAULT_RESPONSE_TIMEOUT) or send smaller requests"
        )
    if 400 <= status < 600:
        # The handler's own status for this request (e.g. 422 for an input it refuses).
        return UpstreamError(status, f"model {model}: {message or status}")
    return UpstreamError(500, f"model {model} answered with unexpected HTTP status {status}: {message}")
