"""The v2 model repository extension over gRPC: load, unload and index that really work.

kserve 0.21's servicer indexes the ``None`` its extension returns (every successful load
or unload answers INTERNAL), has no RepositoryIndex, and reads ``model_name`` from field
1 while Triton's protocol (and so tritonclient) sends it in field 2 (field 1 is
``repository_name``). These handlers take both layouts: the name is field 2 when set,
else field 1; answers use kserve's response messages (``model_name``, ``isLoaded`` /
``isUnloaded``), which tritonclient reads as its empty ones. RepositoryIndex answers
Triton's message: ``models: [{name, version, state, reason}]``.

Messages for Triton's layout are built here from descriptors: two requests and one
response are not worth a compiled proto.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from kserve.errors import ModelNotFound
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from ..errors import ManagementError

SERVICE = "/inference.GRPCInferenceService/"
LOAD, UNLOAD, INDEX = SERVICE + "RepositoryModelLoad", SERVICE + "RepositoryModelUnload", SERVICE + "RepositoryIndex"

_GRPC_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
               403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
               409: grpc.StatusCode.ALREADY_EXISTS, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
               503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
               507: grpc.StatusCode.RESOURCE_EXHAUSTED}


class Repository(Protocol):
    """What the handlers need of kserve's ModelRepositoryExtension (management's implements it)."""

    async def load(self, model_name: str) -> None: ...
    async def unload(self, model_name: str) -> None: ...
    async def index(self, filter_ready: bool = ...) -> list[dict[str, Any]]: ...


def _messages() -> dict[str, Any]:
    string, boolean = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
    optional, repeated = (descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                          descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    file = descriptor_pb2.FileDescriptorProto(name="kserve_torchserve_repository.proto",
                                              package="kserve_torchserve.repository", syntax="proto3")
    layouts = {
        "ModelRequest": [("first", 1, string), ("model_name", 2, string)],
        "IndexRequest": [("repository_name", 1, string), ("ready", 2, boolean)],
        "ModelIndex": [("name", 1, string), ("version", 2, string), ("state", 3, string), ("reason", 4, string)],
    }
    for name, fields in layouts.items():
        entry = file.message_type.add(name=name)
        for field, number, kind in fields:
            entry.field.add(name=field, number=number, type=kind, label=optional)
    index = file.message_type.add(name="IndexResponse")
    index.field.add(name="models", number=1, type=message, label=repeated,
                    type_name=".kserve_torchserve.repository.ModelIndex")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
            for name in (*layouts, "IndexResponse")}


_MESSAGES = _messages()


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, ManagementError):
        await context.abort(_GRPC_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
    if isinstance(exc, ModelNotFound):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc.reason))
    raise exc


class RepositoryHandlers:
    """The three RPCs, as grpc method handlers for a server interceptor to return."""

    def __init__(self, repository: Repository) -> None:
        self._repository = repository
        request, index_request = _MESSAGES["ModelRequest"], _MESSAGES["IndexRequest"]
        self.handlers: dict[str, grpc.RpcMethodHandler] = {
            LOAD: self._unary(self.load, request.FromString, pb.RepositoryModelLoadResponse.SerializeToString),
            UNLOAD: self._unary(self.unload, request.FromString, pb.RepositoryModelUnloadResponse.SerializeToString),
            INDEX: self._unary(self.index, index_request.FromString, _MESSAGES["IndexResponse"].SerializeToString),
        }

    @staticmethod
    def _unary(method: Callable[..., Any], decode: Callable[[bytes], Any], encode: Callable[[Any], bytes]) -> Any:
        return grpc.unary_unary_rpc_method_handler(method, request_deserializer=decode, response_serializer=encode)

    @staticmethod
    def _name(request: Any) -> str:
        return str(request.model_name or request.first)  # Triton's field 2, else kserve's field 1

    async def load(self, request: Any, context: grpc.aio.ServicerContext) -> pb.RepositoryModelLoadResponse:
        name = self._name(request)
        try:
            await self._repository.load(name)
        except Exception as exc:
            await _abort(context, exc)
        return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True)

    async def unload(self, request: Any, context: grpc.aio.ServicerContext) -> pb.RepositoryModelUnloadResponse:
        name = self._name(request)
        try:
            await self._repository.unload(name)
        except Exception as exc:
            await _abort(context, exc)
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)

    async def index(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self._repository.index(bool(request.ready))
        return _MESSAGES["IndexResponse"](models=[_MESSAGES["ModelIndex"](**row) for row in rows])
