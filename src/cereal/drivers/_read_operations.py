"""Read-only store operations, declared once on the contract with the checks that guard them.

A contract method decorated with :func:`read_operation` is recorded in
:data:`READ_OPERATIONS` with its signature, the record type of each item it
answers and the check of its arguments. Everything between a caller and the
store then works from that record, not from code written per operation: the
Manager checks and forwards the call (``Manager._read``), ``cereal serve``
checks each request the same way and answers it, and the gRPC client driver
sends it (:mod:`cereal.wire.reads` maps the arguments and records onto the
operation's messages in ``cereal_v1.proto``). Adding a read-only operation
is the contract method, each store's query, and its RPC in the proto file.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

Method = TypeVar("Method", bound=Callable[..., Any])
Check = Callable[..., None]
"""Called with the operation's arguments by name; raises ``TypeError``/``ValueError``."""


def _accept_anything(**arguments: object) -> None:
    """The check of an operation that takes no arguments."""


@dataclass(frozen=True)
class ReadOperation:
    """One read-only store operation: its name, parameters, answer and argument check."""

    name: str
    """The store method's name (``list_instance_tasks``)."""
    record: type
    """The type of each item of the list it answers."""
    check: Check
    parameters: tuple[inspect.Parameter, ...]
    """The method's parameters after ``self``."""

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults filled in, checked.

        Raises:
            TypeError: the arguments do not fit the operation's signature, or
                one has the wrong type.
            ValueError: the check refused a value.
        """
        bound = inspect.Signature(list(self.parameters)).bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        self.check(**arguments)
        return arguments

    async def call(self, store: object, arguments: Mapping[str, Any]) -> list[Any]:
        """Run the operation on ``store`` with checked ``arguments``.

        Keyword-only arguments that are ``None`` are left out, so a store
        written before an optional argument existed keeps answering the
        calls that do not use it.
        """
        positional = [arguments[p.name] for p in self.parameters if p.kind is not p.KEYWORD_ONLY]
        optional = {
            p.name: arguments[p.name]
            for p in self.parameters
            if p.kind is p.KEYWORD_ONLY and arguments[p.name] is not None
        }
        found: list[Any] = await getattr(store, self.name)(*positional, **optional)
        return found


READ_OPERATIONS: dict[str, ReadOperation] = {}
"""Every read-only operation of the contract, by method name."""


def read_operation(record: type, check: Check = _accept_anything) -> Callable[[Method], Method]:
    """Declare the decorated contract method a read-only operation answering ``record`` items.

    ``check`` receives the call's arguments by name (defaults filled in) and
    raises ``TypeError`` or ``ValueError`` naming a refused one; it runs in
    the Manager and again in ``cereal serve`` before any store sees the call.
    """

    def register(method: Method) -> Method:
        parameters = tuple(inspect.signature(method).parameters.values())[1:]
        READ_OPERATIONS[method.__name__] = ReadOperation(method.__name__, record, check, parameters)
        return method

    return register
