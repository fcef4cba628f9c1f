"""Errors across the wire: :mod:`cereal.errors` to gRPC status codes and back.

The server sends a failed call's status with the error's class name in the
trailing metadata key ``cereal-error`` and its text as the status details;
inside a stream the same pair travels as an ``Error`` message. The client
raises the same class with the same text. A status without the key (the
server unreachable, a refused token, a malformed domain) becomes
:class:`~cereal.errors.DriverError` naming the status.
"""

from __future__ import annotations

import grpc
from cereal import errors
from cereal.wire.metadata import ERROR_KEY
from cereal.wire.proto import cereal_v1_pb2 as pb

_BUILTIN: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "RuntimeError": RuntimeError,
}

_CODES: dict[type[Exception], grpc.StatusCode] = {
    errors.WorkflowInstanceExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.WorkflowScheduleExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.WorkflowInstanceNotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.WorkflowScheduleNotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.NoTasksError: grpc.StatusCode.NOT_FOUND,
    errors.NoWorkflowInstancesError: grpc.StatusCode.NOT_FOUND,
    errors.NoDueWorkflowsError: grpc.StatusCode.NOT_FOUND,
    errors.NoScheduledWorkflowsError: grpc.StatusCode.NOT_FOUND,
    errors.TaskLostError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.WorkflowClaimLostError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidScheduleError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.DriverError: grpc.StatusCode.UNAVAILABLE,
    ValueError: grpc.StatusCode.INVALID_ARGUMENT,
    TypeError: grpc.StatusCode.INVALID_ARGUMENT,
}


def is_carried(exc: BaseException) -> bool:
    """True for the errors that cross the wire by class (cereal's and bad arguments)."""
    return isinstance(exc, errors.CerealError) or type(exc).__name__ in _BUILTIN


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The status code a carried error travels with."""
    for klass in type(exc).__mro__:
        if klass in _CODES:
            return _CODES[klass]
    return grpc.StatusCode.FAILED_PRECONDITION


def error_to_pb(exc: BaseException) -> pb.Error:
    """A carried error as a stream's ``Error`` message."""
    return pb.Error(kind=type(exc).__name__, message=str(exc))


def rebuild(kind: str, message: str) -> Exception:
    """The exception a class name and text stand for (unknown names: DriverError)."""
    if kind in _BUILTIN:
        return _BUILTIN[kind](message)
    klass = getattr(errors, kind, None)
    if isinstance(klass, type) and issubclass(klass, errors.CerealError):
        return klass(message)
    return errors.DriverError(f"cereal server error {kind}: {message}")


def error_from_pb(error: pb.Error) -> Exception:
    """The exception a stream's ``Error`` message carries."""
    return rebuild(error.kind, error.message)


def error_from_rpc(exc: grpc.RpcError) -> Exception:
    """The exception a failed call stands for (see the module doc)."""
    trailing = exc.trailing_metadata() or ()
    details = exc.details() or ""
    for key, value in trailing:
        if key == ERROR_KEY:
            return rebuild(str(value), details)
    code = exc.code()
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    error: errors.DriverError
    if code == grpc.StatusCode.UNIMPLEMENTED:
        error = errors.NotOfferedError(
            f"the cereal server does not offer this call (an older release?): {details}"
        )
    else:
        error = errors.DriverError(f"cereal server call failed: {name}: {details}")
    error.__cause__ = exc
    return error
