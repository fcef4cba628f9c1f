"""Validation of workflow, instance and task names: 1-255 characters, no control characters."""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 255


def check_name(value: object, *, what: str) -> str:
    """Return ``value`` if it is a valid name, else raise naming the problem.

    Any printable text is accepted (spaces, quotes, ``;``, ``/``, unicode) and
    round-trips unchanged; control characters are refused because they break
    logs, terminals and some storage protocols.

    Raises:
        TypeError: if ``value`` is not a ``str``.
        ValueError: if it is empty, longer than 255 characters, or holds a control character.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    for index, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(
                f"{what} {value!r} holds a control character {char!r} at position {index}"
            )
    return value
