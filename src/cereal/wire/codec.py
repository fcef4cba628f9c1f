"""How a record of :mod:`cereal.models` crosses as its ``cereal.v1`` message.

A :class:`RecordCodec` converts a dataclass whose fields match its message
by name. When it is built it reads the dataclass's fields and type hints and
the message's descriptor, and picks for each field how it crosses, so a
conversion does no type inspection:

- plain scalars, and enums of ``str`` (a ``StrEnum`` member is its text), go
  as they are; repeated ones come back as tuples;
- optional scalars (``T | None``) need a proto3 ``optional`` field, so that
  ``None`` stays apart from ``""``, ``0`` or ``False``;
- ``bytes | None`` travels as an absent or present ``Value`` (``None`` is not
  ``b""``);
- ``datetime`` travels as a ``Timestamp`` and comes back as an aware UTC
  datetime; a missing one for a non-optional field is a malformed message;
- a nested record goes through its own codec (``nested``);
- a field needing anything else is converted by hand (``custom``), and a
  field the wire does not carry is named in ``local`` (it must have a default).

A dataclass field without a message field of the same name, or of a type
that field cannot carry, fails when the codec is built (at import), not on
the wire. A :class:`WrittenCodec` offers functions written out by hand in the
same shape (:mod:`.convert` says which records have one, and why).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from cereal.wire.proto import cereal_v1_pb2 as pb

R = TypeVar("R")
M = TypeVar("M")

Convert = Callable[[Any], Any]
"""A value to another (a record field's to its message field's, or a check)."""
Read = Callable[[Any], Any]
"""A record field's value, read from the whole message."""

_TIMESTAMP = Timestamp.DESCRIPTOR.full_name
_VALUE = pb.Value.DESCRIPTOR.full_name


def value_to_pb(data: bytes | None) -> pb.Value | None:
    """Optional bytes as an optional ``Value``."""
    return None if data is None else pb.Value(data=data)


def value_from_pb(holder: object, field: str) -> bytes | None:
    """The optional bytes in ``holder.field`` (a ``Value`` message field)."""
    if not holder.HasField(field):  # type: ignore[attr-defined]
        return None
    value: pb.Value = getattr(holder, field)
    return bytes(value.data)


def time_to_pb(moment: datetime | None) -> Timestamp | None:
    """An aware datetime as a ``Timestamp`` (``None`` stays absent)."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def time_from_pb(holder: object, field: str) -> datetime | None:
    """The aware UTC datetime in ``holder.field``, or ``None`` when absent."""
    if not holder.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp: Timestamp = getattr(holder, field)
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    return moment


def required_time(holder: object, field: str) -> datetime:
    """The aware UTC datetime in ``holder.field``; a missing one is a malformed message."""
    moment = time_from_pb(holder, field)
    if moment is None:
        raise ValueError(f"message field {field!r} is required")
    return moment


def optional_field(holder: object, field: str) -> Any:
    """The proto3 ``optional`` scalar in ``holder.field``, or ``None`` when absent."""
    return getattr(holder, field) if holder.HasField(field) else None  # type: ignore[attr-defined]


class Codec(Protocol[R, M]):
    """Converts records of one type to their message and back."""

    def to_pb(self, record: R, /) -> M:
        """The message carrying ``record``."""

    def from_pb(self, message: M, /) -> R:
        """The record ``message`` carries."""


@dataclass(frozen=True)
class WrittenCodec(Generic[R, M]):
    """A record's conversion written out by hand."""

    to_pb: Callable[[R], M]
    """The message carrying a record."""
    from_pb: Callable[[M], R]
    """The record a message carries."""


class FieldCodec(NamedTuple):
    """How one field of a :class:`RecordCodec` crosses, given by hand."""

    to_pb: Convert
    """The message field's value for the record field's."""
    from_pb: Read
    """The record field's value, read from the whole message."""


class RecordCodec(Generic[R, M]):
    """Converts ``record`` dataclasses to ``message`` messages and back, field by name.

    Args:
        record: the :mod:`cereal.models` dataclass.
        message: the generated message class.
        nested: codecs of the fields that hold another record, by field name.
        custom: conversions of the fields the rules above do not cover, by field name.
        parse: checks of a field's value as it is read (e.g. an overlap
            policy's name), by field name; they raise on a bad value.
        local: record fields the message does not carry (read back as their default).

    Raises:
        TypeError: a record field has no counterpart in the message, or a type
            the message field cannot carry.
    """

    def __init__(
        self,
        record: type[R],
        message: type[M],
        *,
        nested: Mapping[str, Codec[Any, Any]] | None = None,
        custom: Mapping[str, FieldCodec] | None = None,
        parse: Mapping[str, Convert] | None = None,
        local: Collection[str] = (),
    ) -> None:
        self.record = record
        self.message = message
        plans = _plans(record, message, nested or {}, custom or {}, parse or {}, local)
        names = tuple(plans)
        self._names = names
        self._get_all = _getter(names)
        self._to = tuple((n, p.to_pb) for n, p in plans.items() if p.to_pb is not None)
        # read in one call: the fields that are their message attribute as it is
        self._direct = tuple(n for n, p in plans.items() if p.read is None)
        self._get_direct = _getter(self._direct)
        self._read = tuple((n, p.read) for n, p in plans.items() if p.read is not None)
        self._parse = tuple((n, p.parse) for n, p in plans.items() if p.parse is not None)

    def to_pb(self, record: R, /) -> M:
        """The message carrying ``record``."""
        values = dict(zip(self._names, self._get_all(record), strict=True))
        for name, convert in self._to:
            values[name] = convert(values[name])
        return self.message(**values)

    def from_pb(self, message: M, /) -> R:
        """The record ``message`` carries.

        Raises:
            ValueError: a required time is missing, or a value is not one the
                record accepts (an unknown status, overlap policy, ...).
        """
        values = dict(zip(self._direct, self._get_direct(message), strict=True))
        for name, read in self._read:
            values[name] = read(message)
        for name, parse in self._parse:
            values[name] = parse(values[name])
        return self.record(**values)


@functools.cache
def plain_codec(record: type[Any], message: type[Any]) -> RecordCodec[Any, Any]:
    """The one :class:`RecordCodec` of ``record`` and ``message`` with no per-field options.

    Shared by :mod:`cereal.wire.convert` and :mod:`cereal.wire.reads`, so the
    codec a read-only RPC uses is the one the conversion tests exercise.
    """
    return RecordCodec(record, message)


class _Plan(NamedTuple):
    """How one field crosses; a ``None`` step is skipped."""

    to_pb: Convert | None  # the record's value to the message's (None: as it is)
    parse: Convert | None  # applied to the value read (None: as it is)
    read: Read | None = None  # reads the value off the message (None: its attribute)


def _plans(
    record: type,
    message: type,
    nested: Mapping[str, Codec[Any, Any]],
    custom: Mapping[str, FieldCodec],
    parse: Mapping[str, Convert],
    local: Collection[str],
) -> dict[str, _Plan]:
    """Each carried field's plan, in the record's field order."""
    fields = dataclasses.fields(record)
    for field in fields:
        missing = dataclasses.MISSING
        if field.name in local and field.default is missing and field.default_factory is missing:
            raise TypeError(f"{record.__name__}.{field.name} is not carried, so it needs a default")
    carried = [field.name for field in fields if field.name not in local]
    unknown = (set(nested) | set(custom) | set(parse)) - set(carried)
    if unknown:
        raise TypeError(f"{record.__name__} has no carried fields {sorted(unknown)}")
    hints = typing.get_type_hints(record)
    described = message.DESCRIPTOR.fields_by_name  # type: ignore[attr-defined]
    plans: dict[str, _Plan] = {}
    for name in carried:
        if name not in described:
            raise TypeError(f"{message.__name__} has no field {name!r} for {record.__name__}")
        if name in custom:
            plan = _Plan(custom[name].to_pb, None, custom[name].from_pb)
        else:
            where = f"{record.__name__}.{name}"
            plan = _plan(where, name, hints[name], described[name], nested.get(name))
        if name in parse:
            plan = plan._replace(parse=_then(plan.parse, parse[name]))
        plans[name] = plan
    return plans


def _plan(where: str, name: str, hint: Any, field: Any, nested: Codec[Any, Any] | None) -> _Plan:
    """How the record field ``name`` of type ``hint`` crosses as the message ``field``."""
    optional = type(None) in typing.get_args(hint)
    inner = _without_none(hint)
    kind = field.message_type.full_name if field.message_type is not None else None
    if kind == _VALUE:
        if inner is not bytes:
            raise TypeError(f"{where}: a Value field carries bytes | None, not {hint!r}")
        return _Plan(value_to_pb, None, _value_reader(name))
    if kind == _TIMESTAMP:
        if inner is not datetime:
            raise TypeError(f"{where}: a Timestamp field carries a datetime, not {hint!r}")
        return _Plan(time_to_pb, None, _time_reader(name, optional))
    if kind is not None:
        if nested is None:
            raise TypeError(f"{where} holds a message: give its codec (nested) or a custom one")
        return _nested_plan(name, optional, nested)
    if nested is not None:
        raise TypeError(f"{where}: a nested codec for a scalar field")
    if _is_repeated(field):
        return _Plan(None, tuple)
    if optional and not field.has_presence:
        raise TypeError(f"{where} may be None: its message field must be proto3 optional")
    parse: Convert | None = None
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        if not issubclass(inner, str):
            raise TypeError(f"{where}: only str enums cross as their text")
        parse = _unless_none(inner) if optional else inner
    return _Plan(None, parse, _optional_reader(name) if optional else None)


def _nested_plan(name: str, optional: bool, nested: Codec[Any, Any]) -> _Plan:
    if not optional:
        return _Plan(nested.to_pb, nested.from_pb)

    def to_pb(value: Any) -> Any:
        return None if value is None else nested.to_pb(value)

    def read(message: Any) -> Any:
        return nested.from_pb(getattr(message, name)) if message.HasField(name) else None

    return _Plan(to_pb, None, read)


def _value_reader(name: str) -> Read:
    def read(message: Any) -> bytes | None:
        return bytes(getattr(message, name).data) if message.HasField(name) else None

    return read


def _time_reader(name: str, optional: bool) -> Read:
    def read(message: Any) -> datetime | None:
        if message.HasField(name):
            moment: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
            return moment
        if optional:
            return None
        raise ValueError(f"message field {name!r} is required")

    return read


def _optional_reader(name: str) -> Read:
    def read(message: Any) -> Any:
        return getattr(message, name) if message.HasField(name) else None

    return read


def _unless_none(parse: Convert) -> Convert:
    return lambda value: None if value is None else parse(value)


def _then(first: Convert | None, second: Convert) -> Convert:
    if first is None:
        return second
    return lambda value: second(first(value))


def _without_none(hint: Any) -> Any:
    """``T`` of ``T | None`` (the hint itself when it is no such union)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if len(args) == 1 and type(None) in typing.get_args(hint):
        return args[0]
    return hint


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf 6+; ``label`` before
    if repeated is None:
        return bool(field.label == field.LABEL_REPEATED)
    return bool(repeated)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Reads ``names`` off an object in one call, always as a tuple."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda obj: (one(obj),)
    return operator.attrgetter(*names)
