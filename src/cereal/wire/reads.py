"""A read-only store operation on the wire, derived from its declaration and its RPC.

Each operation in :data:`~cereal.drivers._read_operations.READ_OPERATIONS`
travels as the RPC named after it in CamelCase (``list_instance_tasks`` ->
``ListInstanceTasks``). Its request message holds one field per parameter,
of the same name; a parameter that may be left out is an ``optional`` field
(or the request is ``Empty`` when there are none). Its response holds one
repeated field of the record's message, converted by a
:class:`~cereal.wire.codec.RecordCodec`. :func:`check_rpc` refuses an
operation whose RPC does not have that shape; the service runs it for every
operation when it is built.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from cereal.drivers._read_operations import ReadOperation
from cereal.wire.codec import RecordCodec, plain_codec
from cereal.wire.proto import cereal_v1_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["Cereal"]


def rpc_name(operation: ReadOperation) -> str:
    """The RPC that carries ``operation``."""
    return "".join(part.capitalize() for part in operation.name.split("_"))


def _message_class(descriptor: Any) -> Any:
    return getattr(pb, descriptor.name)


@functools.cache
def _shape(operation: ReadOperation) -> tuple[Any, Any, str, RecordCodec[Any, Any]]:
    """The request class, response class, its list field and the record's codec."""
    method = _SERVICE.methods_by_name.get(rpc_name(operation))
    if method is None:
        raise TypeError(f"{operation.name}: cereal_v1.proto has no rpc {rpc_name(operation)}")
    request = method.input_type
    fields = set(request.fields_by_name)
    wanted = {p.name for p in operation.parameters}
    if fields != wanted:
        raise TypeError(
            f"{operation.name}: {request.name} has fields {sorted(fields)}, "
            f"the operation takes {sorted(wanted)}"
        )
    for field in request.fields:
        if field.message_type is not None:
            raise TypeError(f"{operation.name}: {request.name}.{field.name} is not a scalar")
    response = method.output_type
    if len(response.fields) != 1 or response.fields[0].message_type is None:
        raise TypeError(f"{operation.name}: {response.name} must hold one repeated record field")
    items = response.fields[0]
    codec = plain_codec(operation.record, _message_class(items.message_type))
    return _message_class(request), _message_class(response), items.name, codec


def check_rpc(operation: ReadOperation) -> None:
    """Refuse an operation whose RPC is missing or shaped unlike it.

    Raises:
        TypeError: naming the operation and what does not match.
    """
    _shape(operation)


def request_to_pb(operation: ReadOperation, arguments: Mapping[str, Any]) -> Any:
    """The request carrying ``arguments`` (those that are ``None`` stay unset)."""
    request, _, _, _ = _shape(operation)
    return request(**{name: value for name, value in arguments.items() if value is not None})


def arguments_from_pb(operation: ReadOperation, message: Any) -> dict[str, Any]:
    """The arguments a request carries; an unset optional field is ``None``."""
    fields = message.DESCRIPTOR.fields_by_name
    arguments: dict[str, Any] = {}
    for parameter in operation.parameters:
        name = parameter.name
        field = fields[name]
        if field.is_repeated:
            arguments[name] = list(getattr(message, name))
            continue
        unset = field.has_presence and not message.HasField(name)
        arguments[name] = None if unset else getattr(message, name)
    return arguments


def results_to_pb(operation: ReadOperation, records: list[Any]) -> Any:
    """The response carrying ``records``."""
    _, response, field, codec = _shape(operation)
    return response(**{field: [codec.to_pb(record) for record in records]})


def results_from_pb(operation: ReadOperation, message: Any) -> list[Any]:
    """The records a response carries."""
    _, _, field, codec = _shape(operation)
    return [codec.from_pb(item) for item in getattr(message, field)]
