"""Keyset pages of an instance's tasks and event history, shared by the drivers.

A page is newest first: the ``limit`` newest entries older than the cursor
``before`` (a task id or event ``seq`` from the previous page). New entries
always get higher ids, so paging back never skips or repeats one while the
instance keeps receiving events or tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

NO_CURSOR = 2**63 - 1
"""A cursor above every id: what the SQL queries compare with when ``before`` is not given."""


@dataclass(frozen=True)
class Page:
    """One page asked of a SQL driver: at most ``limit`` rows (all: ``None``) below ``before``."""

    limit: int | None
    before: int | None

    def params(self) -> dict[str, int | None]:
        """The page's query parameters: ``before`` (always a number) and ``page_limit``."""
        return {
            "before": NO_CURSOR if self.before is None else self.before,
            "page_limit": self.limit,
        }


def is_paged(limit: int | None, before: object | None) -> bool:
    """Whether a listing call asks for a page (newest first) rather than everything."""
    return limit is not None or before is not None


def check_page(limit: int | None, before: int | None) -> None:
    """Refuse a page size below 1 or a negative cursor.

    Raises:
        TypeError: ``limit`` or ``before`` is not an int.
        ValueError: ``limit`` is below 1 or ``before`` below 0.
    """
    for name, value in (("limit", limit), ("before", before)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if before is not None and before < 0:
        raise ValueError(f"before must be at least 0, got {before}")


def task_cursor(before: str | None) -> int | None:
    """The numeric id behind a task id given as a cursor (the built-in drivers' ids are integers).

    Raises:
        TypeError: ``before`` is not a str.
        ValueError: ``before`` is not a task id these drivers issue.
    """
    return id_cursor(before, "task id")


def id_cursor(before: str | None, what: str) -> int | None:
    """The numeric id behind an id (a ``what``) given as a cursor; ``None`` stays ``None``.

    Raises:
        TypeError: ``before`` is not a str.
        ValueError: ``before`` is not such an id.
    """
    if before is None:
        return None
    if not isinstance(before, str):
        raise TypeError(f"before must be a {what} (str) or None, got {type(before).__name__}")
    if not before.isascii() or not before.isdigit():
        raise ValueError(f"before must be a {what} from an earlier page, got {before!r}")
    found = int(before)
    if found > NO_CURSOR:
        raise ValueError(f"before must be a {what} from an earlier page, got {before!r}")
    return found


def newest_first(
    items: Sequence[T], key: Callable[[T], int], limit: int | None, before: int | None
) -> list[T]:
    """The page of ``items`` (sorted oldest first by ``key``): newest first, below ``before``."""
    older = [item for item in items if before is None or key(item) < before]
    older.reverse()
    return older if limit is None else older[:limit]
