"""gRPC fast path: ModelInfer for our models without kserve's per-call layers.

kserve's gRPC server runs every call through two Python interceptors (grpc_interceptor
builds a new handler per call), then its servicer, DataPlane.infer and Model.__call__
(three histograms, three ``inspect.iscoroutinefunction`` checks, two clocks per stage).
On W1 that cost our process ~0.1 ms of CPU per call on top of grpc.aio's own ~0.35 ms;
without it, 8-10% more calls per second fit on two shared cores (benchmarks/grpc_floor.py
measures ours against the leanest Python front and TorchServe's own gRPC).

Here ModelInfer for one of our models does what kserve's path does, in the same order:
kserve's ``validate_grpc_request`` -> ``InferRequest.from_grpc`` -> ``model.predict``
-> ``to_grpc`` (ours, the same message without kserve's pass over every element of a
numeric output), recording kserve's per-model preprocess/predict/postprocess
histograms, with errors answered by ``QuietExceptionToStatus``: kserve's codes, the messages
REST answers with (errors.py), one log line each instead of kserve's traceback per bad call.
The inputs' datatypes and shapes are checked before kserve converts them (tensors.py), so an
unknown datatype is named as over REST rather than "invalid content type". Every other method, and ModelInfer for a name we do not serve,
goes through kserve's interceptors and servicer unchanged; so does ModelInfer itself when
the fast path is off (``fast=False``: per-request logging at TS_LOG_LEVEL=DEBUG, or
``--disable_fast_path``). The repository extension's RPCs are answered by handlers of
ours in every case (grpc_repository.py: kserve's fail after every successful call).
"""

from __future__ import annotations

import functools
import time
from concurrent import futures
from typing import Any, Awaitable, Callable, NoReturn, cast

import grpc
from grpc import aio
from kserve.model_repository import ModelRepository
from kserve.constants.constants import GRPC_CONTENT_DATATYPE_MAPPINGS
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest, InferResponse
from grpc_interceptor.exceptions import GrpcException

from . import errors, logs, tensors
from .metrics import kserve_histograms


MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# The gRPC code for each HTTP status errors.py gives (GrpcExceptions, e.g. UpstreamError, carry their own).
_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
          501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}


class QuietExceptionToStatus(ExceptionToStatusInterceptor):  # type: ignore[misc]
    """kserve's ExceptionToStatusInterceptor with REST's messages and one log line per failed call
    (kserve's logs every InvalidInput with its traceback at ERROR)."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: aio.ServicerContext,
                               method_name: str) -> NoReturn:
        if isinstance(ex, aio.AbortError) or (context.code() and not isinstance(ex, GrpcException)):
            raise ex  # the servicer aborted the call itself: answered already
        status, message, unexpected = errors.status_and_message(ex)
        code = ex.status_code if isinstance(ex, GrpcException) else _CODES.get(status, grpc.StatusCode.INTERNAL)
        if isinstance(ex, GrpcException):
            message = str(ex.details)
        metadata = dict(context.invocation_metadata() or ())
        model = getattr(request_or_iterator, "model_name", "")
        logs.request_failed(status, f"gRPC {method_name.rsplit('/', 1)[-1]} {model}".rstrip(),
                            metadata.get("x-request-id"), message, exc=ex, unexpected=unexpected)
        await context.abort(code, message[:errors.MAX_MESSAGE])
        raise ex  # unreachable: abort raises


class ModelInferFastPath(aio.ServerInterceptor):  # type: ignore[misc]
    """The only server interceptor: ModelInfer goes to ``model_infer``; the rest through kserve's chain."""

    def __init__(self, servicer: InferenceServicer, registry: ModelRepository, fast: bool = True,
                 handlers: dict[str, grpc.RpcMethodHandler] | None = None) -> None:
        self._servicer = servicer
        self._registry = registry
        self._fast = fast
        self._own = dict(handlers or {})  # methods answered by handlers of ours (the repository extension)
        self._logging = LoggingInterceptor()
        self._exceptions = QuietExceptionToStatus()
        # Built once: grpc_interceptor builds a handler like this on every call.
        self._handler = grpc.unary_unary_rpc_method_handler(
            self.model_infer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method == MODEL_INFER and self._fast:
            return self._handler
        if details.method in self._own:
            return self._own[details.method]
        # kserve's interceptors, in kserve's order: logging first, then exceptions -> status codes.
        return await self._logging.intercept_service(
            functools.partial(self._exceptions.intercept_service, continuation), details
        )

    async def model_infer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> pb.ModelInferResponse:
        try:
            model = self._registry.get_model(request.model_name)
            if not getattr(model, "direct_predict", False):  # not ours (or unknown: kserve's NOT_FOUND)
                return await self._servicer.ModelInfer(request, context)
            preprocess, predict, postprocess = kserve_histograms(model.name)
            InferenceServicer.validate_grpc_request(request)
            tensors.check_inputs([tensor.name for tensor in request.inputs])
            for tensor in request.inputs:  # before kserve's from_grpc, whose words are "invalid content type"
                tensors.check_header(tensor.name, tensor.datatype, tensor.shape)
                tensors.check_contents(tensor.name, tensor.datatype, [f.name for f, _ in tensor.contents.ListFields()])
            started = time.perf_counter()
            infer_request = InferRequest.from_grpc(request)
            decoded = time.perf_counter()
            preprocess.observe(decoded - started)
            try:
                # Metadata as headers: a sticky header (management/traffic.py) works over gRPC too.
                response = await model.predict(infer_request, dict(context.invocation_metadata() or ()))
            finally:
                predicted = time.perf_counter()
                predict.observe(predicted - decoded)
            answer = to_grpc(cast(InferResponse, response))  # predict answers an InferRequest so
            postprocess.observe(time.perf_counter() - predicted)
            return answer
        except Exception as exc:
            await self._exceptions.handle_exception(exc, request, context, MODEL_INFER)  # always raises
            raise  # unreachable: keeps type checkers sure no response is returned


def to_grpc(response: InferResponse) -> pb.ModelInferResponse:
    """kserve's ``to_grpc`` for a response of numeric JSON outputs, without its pass over every element
    (which turns str into bytes, for BYTES outputs only): the list goes to protobuf as it is, in C.
    Anything else (BYTES, FP16, binary outputs, parameters) is kserve's own conversion."""
    if response._use_binary_outputs or response.parameters:
        return response.to_grpc()
    outputs = []
    for output in response.outputs:
        key = GRPC_CONTENT_DATATYPE_MAPPINGS.get(output.datatype)
        if (key is None or key == "bytes_contents" or output.parameters or type(output.data) is not list
                or output._raw_data is not None):
            return response.to_grpc()
        outputs.append({"name": output.name, "shape": output.shape, "datatype": output.datatype,
                        "contents": {key: output.data}})
    return pb.ModelInferResponse(id=response.id, model_name=response.model_name,
                                 model_version=response.model_version, outputs=outputs)


class LeanGRPCServer(GRPCServer):  # type: ignore[misc]
    """kserve's GRPCServer (same options, servicer and port) with ModelInferFastPath as its interceptor.

    ``start`` mirrors kserve 0.21's, which fixes its interceptors inside the method.
    """

    def __init__(self, *args: Any, registry: ModelRepository, fast: bool = True,
                 handlers: dict[str, grpc.RpcMethodHandler] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registry = registry
        self._fast = fast
        self._handlers = handlers

    async def start(self, max_workers: int) -> None:
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(ModelInferFastPath(servicer, self._registry, self._fast, self._handlers),),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()
