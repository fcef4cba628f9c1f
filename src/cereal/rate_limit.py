"""Task rate limits: :class:`RateLimit`, at most so many starts of a key per period.

A task enqueued with a ``concurrency_key`` and a ``rate_limit`` starts only
while fewer than ``starts`` tasks of that key started in the last ``per``: a
sliding window kept in the store (one row per start, until it leaves the
window), so it holds across every process and host sharing the store. A task
over the limit stays queued, it is never failed: the first claim after a
start leaves the window takes it. Every lease is a start: a retry's next
attempt and a task rerun after its lease was lost count again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

MAX_RATE_STARTS = 10_000
"""The most starts a rate limit may allow per period (each is a row while in the window)."""

MIN_RATE_PERIOD = 0.001
"""The shortest period, in seconds (1 ms)."""

MAX_RATE_PERIOD = 366 * 24 * 3600.0
"""The longest period, in seconds (366 days)."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``starts`` starts per ``per`` (a timedelta, or seconds) of one key.

    Bounds: ``starts`` an int from 1 to :data:`MAX_RATE_STARTS`; ``per``
    from 1 ms to 366 days.

    Raises:
        TypeError / ValueError: a field of the wrong type or out of range.
    """

    starts: int
    per: float | timedelta

    def __post_init__(self) -> None:
        if isinstance(self.starts, bool) or not isinstance(self.starts, int):
            raise TypeError(f"RateLimit starts must be an int, got {type(self.starts).__name__}")
        if not 1 <= self.starts <= MAX_RATE_STARTS:
            raise ValueError(
                f"RateLimit starts must be from 1 to {MAX_RATE_STARTS}, got {self.starts}"
            )
        period_seconds(self.per, where="RateLimit per")

    @property
    def seconds(self) -> float:
        """The period in seconds."""
        return period_seconds(self.per, where="RateLimit per")


def period_seconds(per: object, *, where: str) -> float:
    """``per`` (a timedelta or a number of seconds) in seconds, checked.

    Raises:
        TypeError: not a timedelta or a number.
        ValueError: not finite, or outside 1 ms to 366 days.
    """
    if isinstance(per, timedelta):
        seconds = per.total_seconds()
    elif isinstance(per, (int, float)) and not isinstance(per, bool):
        seconds = float(per)
    else:
        raise TypeError(f"{where} must be a timedelta or seconds, got {type(per).__name__}")
    if not math.isfinite(seconds) or not MIN_RATE_PERIOD <= seconds <= MAX_RATE_PERIOD:
        raise ValueError(
            f"{where} must be from {MIN_RATE_PERIOD} s to {MAX_RATE_PERIOD:.0f} s "
            f"(366 days), got {seconds!r}"
        )
    return seconds
