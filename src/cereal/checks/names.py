"""Validation of workflow, instance and task names.

A name is 1-255 characters with no control characters and none of the
invisible characters that reorder or split text when shown (bidi overrides,
line and paragraph separators, zero-width space, byte-order mark).
"""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 255

INVISIBLE_CHARACTERS = frozenset(
    [chr(code) for code in range(0x202A, 0x202F)]  # bidi embeddings and overrides
    + [chr(code) for code in range(0x2066, 0x206A)]  # bidi isolates
    + ["\u2028", "\u2029", "\u200b", "\ufeff"]  # line/paragraph separator, zero-width, BOM
)
"""Characters refused in names: they make a name display as another or across lines."""


def check_name(value: object, *, what: str) -> str:
    """Return ``value`` if it is a valid name, else raise naming the problem.

    Any printable text is accepted (spaces, quotes, ``;``, ``/``, unicode,
    right-to-left letters) and round-trips unchanged. Control characters are
    refused because they break logs, terminals and some storage protocols;
    bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069),
    the line and paragraph separators (U+2028, U+2029), the zero-width space
    (U+200B) and the byte-order mark (U+FEFF) likewise, because they make a
    name look like another one or span lines where it is shown.

    Raises:
        TypeError: if ``value`` is not a ``str``.
        ValueError: if it is empty, longer than 255 characters, or holds a control
            or invisible character (the one-line message names it and its position).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    for index, char in enumerate(value):
        if char in INVISIBLE_CHARACTERS:
            raise ValueError(
                f"{what} {value!r} holds an invisible character {char!r} at position {index}"
            )
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(
                f"{what} {value!r} holds a control character {char!r} at position {index}"
            )
    return value
