"""Task ids as the SQL stores key them: a settlement naming anything else matches nothing."""

from __future__ import annotations

MAX_ROW_ID = 2**63 - 1
"""The largest id a 64-bit integer key holds (SQLite's rowid, PostgreSQL's bigint)."""


def row_id(task_id: str) -> int | None:
    """The integer key behind ``task_id``, or ``None`` when no stored task can have it."""
    # isascii: int() would also read other scripts' digits
    if not task_id.isascii() or not task_id.isdigit():
        return None
    found = int(task_id)
    return found if found <= MAX_ROW_ID else None
