"""The JSON codec at the edge of the engine.

Users hand cereal Python values (parameters, payloads, results); drivers store
bytes. ``encode`` turns a value into JSON bytes (``None`` stays ``None``: no
bytes are stored), refusing what JSON cannot hold with a ``TypeError`` that
names the call, and refusing oversize values with a ``ValueError``. ``decode``
turns stored bytes back into a value, optionally into a requested type.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

T = TypeVar("T")

DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024


def _to_jsonable(value: object) -> object:
    """Turn dataclasses and pydantic models into plain JSON-able structures."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode(value: object, *, where: str, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> bytes | None:
    """Encode ``value`` as compact UTF-8 JSON; ``None`` gives ``None`` (nothing stored).

    Args:
        value: any JSON value, dataclass instance or pydantic model.
        where: the public call that passed the value, for the error message.
        max_bytes: the size limit of the encoded value.

    Raises:
        TypeError: the value cannot be encoded as JSON (NaN and infinities included).
        ValueError: the encoded value is larger than ``max_bytes``.
    """
    if value is None:
        return None
    try:
        text = json.dumps(
            value, default=_to_jsonable, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{where}: value is not JSON-encodable: {exc}") from exc
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not Unicode text, so not JSON
        raise TypeError(f"{where}: value is not JSON-encodable: {exc}") from exc
    if len(raw) > max_bytes:
        raise ValueError(
            f"{where}: encoded value is {len(raw)} bytes, over the limit of {max_bytes} bytes"
        )
    return raw


MAX_ERROR_CHARS = 32_768
"""Most characters of any stored error text (an error, its type name, its traceback).

A Manager cuts a longer text to this (its start kept, the cut said); ``cereal
serve`` refuses a report or decision carrying a longer one.
"""


def storable_text(text: str) -> str:
    """``text`` as every store can hold it: NUL and lone surrogates escaped, length bounded.

    PostgreSQL text refuses NUL and every store refuses a lone surrogate (it
    is not UTF-8), so an error text holding one would never commit. A text
    over :data:`MAX_ERROR_CHARS` keeps its start and says how
    much was cut (an exception's message may hold a whole request body).
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_CHARS:
        kept = MAX_ERROR_CHARS - 64  # room for the note, which is shorter than that
        text = f"{text[:kept]}... [{len(text) - kept} characters cut]"
    return text


def check_size(raw: bytes | None, *, where: str, max_bytes: int) -> bytes | None:
    """Refuse already-encoded bytes over ``max_bytes`` (for values that arrive encoded)."""
    if raw is not None and len(raw) > max_bytes:
        raise ValueError(
            f"{where}: encoded value is {len(raw)} bytes, over the limit of {max_bytes} bytes"
        )
    return raw


def decode(raw: bytes | None, type: type[T] | None = None) -> Any:
    """Decode stored JSON bytes; empty or absent bytes give ``None``.

    With ``type`` the decoded value is converted: a dataclass is built from an
    object (nested dataclasses and ``list``/``dict`` of them too), a pydantic
    model through ``model_validate``, a ``TypedDict`` or ``dict`` is returned
    as the decoded object, and any other callable gets the decoded value.
    """
    if raw is None or len(raw) == 0:
        return None
    value = json.loads(raw)
    if type is None:
        return value
    return convert(value, type)


def convert(value: Any, target: Any) -> Any:
    """Convert a decoded JSON value to ``target`` (see :func:`decode`)."""
    if target is Any or target is object or value is None:
        return value
    origin = typing.get_origin(target)
    if origin is not None:
        return _convert_generic(value, target, origin)
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        return _convert_dataclass(value, target)
    validate = getattr(target, "model_validate", None)
    if callable(validate):
        return validate(value)
    if _is_typeddict(target) or target in (dict, list, str, int, float, bool):
        if target is float and isinstance(value, int):
            return float(value)
        return value
    return cast(Callable[[Any], Any], target)(value)


def _is_typeddict(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, dict) and hasattr(target, "__total__")


def _convert_generic(value: Any, target: Any, origin: Any) -> Any:
    args = typing.get_args(target)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list):
        item = args[0] if args else Any
        items = [convert(element, item) for element in value]
        return items if origin is list else origin(items)
    if origin in (dict, Mapping) and isinstance(value, dict) and len(args) == 2:
        return {key: convert(element, args[1]) for key, element in value.items()}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in args:
            if option is type(None):
                continue
            try:
                return convert(value, option)
            except (TypeError, ValueError):
                continue
        return value
    return value


def _convert_dataclass(value: Any, target: type[Any]) -> Any:
    if not isinstance(value, dict):
        raise TypeError(f"cannot build {target.__name__} from JSON {type(value).__name__}")
    hints = typing.get_type_hints(target)
    known = {field.name for field in dataclasses.fields(target) if field.init}
    kwargs = {
        key: convert(element, hints.get(key, Any)) for key, element in value.items() if key in known
    }
    return target(**kwargs)
