"""Our exception types. Request-path errors are kserve's own (they carry HTTP status codes)."""

from __future__ import annotations

import re

from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException


class StartupError(Exception):
    """Start-up cannot continue; the message is one line naming what is wrong and how to fix it."""


class ConfigError(StartupError):
    """A setting (CLI flag or environment variable) has a bad value."""


class TorchServeStartError(StartupError):
    """TorchServe did not become ready; the message carries its last log lines."""


class TorchServeGaveUp(Exception):
    """TorchServe kept dying; the supervisor stopped restarting it."""


# Seconds a 503 for a passing condition (a full queue, a restart) tells clients to wait (Retry-After).
RETRY_AFTER_S = 1

# HTTP status -> the gRPC code kserve's gRPC server should answer with.
_GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    507: "RESOURCE_EXHAUSTED",
}


class UpstreamError(GrpcException):
    """A request failed in or on the way to TorchServe.

    One type for both of kserve's front doors: kserve's gRPC interceptor answers a
    GrpcException with its ``status_code``; our REST handler (serving/rest.py) answers with
    ``http_status``. kserve's own InferenceError would give every failure 500 on REST
    and INVALID_ARGUMENT on gRPC.
    """

    def __init__(self, http_status: int, message: str, retry_after_s: int | None = None,
                 grpc_code: StatusCode | None = None) -> None:
        """``retry_after_s``: answer REST with a ``Retry-After`` header (a full queue, a restart).
        ``grpc_code``: where the HTTP status alone picks the wrong one (a full queue is 503 on REST
        but RESOURCE_EXHAUSTED on gRPC)."""
        code = grpc_code or getattr(StatusCode, _GRPC_CODES.get(http_status, "INTERNAL"))
        super().__init__(details=message, status_code=code)
        self.http_status = http_status
        self.message = message
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


# TorchServe's error "type" for each status its management API answers with.
_MANAGEMENT_TYPES = {
    400: "BadRequestException",
    401: "TokenAuthorizationException",
    403: "ModelApiDisabledException",
    404: "ModelNotFoundException",
    409: "ConflictStatusException",
    413: "RequestEntityTooLargeException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
    507: "InsufficientStorageException",
}


class ManagementError(Exception):
    """A /models or repository call cannot be done; answered as TorchServe answers:
    ``{"code": status, "type": ..., "message": ...}``."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _MANAGEMENT_TYPES.get(status, "InternalServerException")

    def body(self) -> dict[str, object]:
        return {"code": self.status, "type": self.type, "message": self.message}


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def shown(value: object) -> str:
    """A client's value for an error message: quoted when it is a plain name (what a user needs
    to see which one was wrong), else only described, so a message never carries arbitrary input."""
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return repr(value)
    return "the one given" if isinstance(value, str) else f"a {type(value).__name__}"
