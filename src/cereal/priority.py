"""Task priorities: higher goes first, and waiting ages a task, so none starves.

A task's priority is an int from 0 (the default) to :data:`MAX_PRIORITY`.
Each level is worth :data:`PRIORITY_STEP` seconds (a minute) of waiting: the
claim takes due tasks in order of ``start_after - priority * PRIORITY_STEP``
(their *ready rank*), so a task of priority ``p`` goes ahead of a task of
priority ``q < p`` unless that one became due more than ``(p - q)`` minutes
earlier. That is aging: a task of priority ``q`` is passed over only by tasks
of priority ``p`` that became due less than ``(p - q)`` minutes after it,
whatever the load, so its wait is bounded. The rank is fixed when a task is
queued (and again when it is retried or requeued), so the stores keep it in an
index and a claim reads it in order.
"""

from __future__ import annotations

MAX_PRIORITY = 100
"""The highest priority a task may have (the default, and the lowest, is 0)."""

PRIORITY_STEP = 60.0
"""Seconds of waiting one priority level is worth."""


def check_priority(priority: object, *, where: str) -> int:
    """``priority`` if it is an int from 0 to :data:`MAX_PRIORITY`.

    Raises:
        TypeError: not an int (a bool is refused too).
        ValueError: out of range.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"{where} priority must be an int, got {type(priority).__name__}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"{where} priority must be from 0 to {MAX_PRIORITY}, got {priority}")
    return priority
