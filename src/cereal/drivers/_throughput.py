"""Finished-run counts per time bucket: the window's checks and bounds, shared by the drivers.

Buckets are aligned to whole multiples of their length since the epoch, so two
calls a few seconds apart answer the same buckets (a chart refreshed by the
dashboard does not shift). The last bucket is the one holding ``until``; the
window is ``buckets`` of them. Each store counts with two range scans of its
end-time indexes (every finished run, then the failed ones) bounded by the
window, so the cost follows the runs in the window, never the whole history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cereal.checks.times import utcnow
from cereal.models import ThroughputBucket

MAX_BUCKET_SECONDS = 7 * 86400
"""The longest bucket: a week."""

MAX_BUCKETS = 1000
"""The most buckets one call answers."""

MAX_WINDOW_SECONDS = 366 * 86400
"""The longest window (``bucket_seconds * buckets``): a year."""


def check_throughput(bucket_seconds: object, buckets: object, until: object) -> None:
    """Refuse a bucket length, bucket count or end that is out of range or of the wrong type.

    Raises:
        TypeError: ``bucket_seconds`` or ``buckets`` is not an int, or ``until``
            is not a number of seconds since the epoch (nor ``None``).
        ValueError: a value is out of range; the message names it and the range.
    """
    for name, value in (("bucket_seconds", bucket_seconds), ("buckets", buckets)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    assert isinstance(bucket_seconds, int) and isinstance(buckets, int)
    if not 1 <= bucket_seconds <= MAX_BUCKET_SECONDS:
        raise ValueError(
            f"bucket_seconds must be from 1 to {MAX_BUCKET_SECONDS}, got {bucket_seconds}"
        )
    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be from 1 to {MAX_BUCKETS}, got {buckets}")
    if bucket_seconds * buckets > MAX_WINDOW_SECONDS:
        raise ValueError(
            f"the window (bucket_seconds * buckets = {bucket_seconds * buckets} s) "
            f"must be at most {MAX_WINDOW_SECONDS} s"
        )
    if until is None:
        return
    if isinstance(until, bool) or not isinstance(until, int | float):
        raise TypeError(f"until must be seconds since the epoch, got {type(until).__name__}")
    if not 0 <= until < 253402300800:  # NaN and infinities fail too; the bound is year 10000
        raise ValueError(
            f"until must be seconds since the epoch (a finite, positive number), got {until!r}"
        )


@dataclass(frozen=True)
class Window:
    """The buckets one call counts: ``count`` of ``seconds`` each, the first at ``first``."""

    first: int
    """The first bucket's start, in whole seconds since the epoch."""
    seconds: int
    count: int

    @property
    def end(self) -> int:
        """Where the last bucket ends (excluded), in seconds since the epoch."""
        return self.first + self.seconds * self.count

    def index(self, ended_at: float) -> int:
        """The bucket holding an end time inside the window."""
        return int((ended_at - self.first) // self.seconds)

    def answer(
        self, all_counts: Mapping[int, int], failed_counts: Mapping[int, int]
    ) -> list[ThroughputBucket]:
        """One bucket per slot, oldest first, from the per-bucket counts of all and failed runs."""
        found = []
        for slot in range(self.count):
            total = int(all_counts.get(slot, 0))
            failed = int(failed_counts.get(slot, 0))
            start = datetime.fromtimestamp(self.first + slot * self.seconds, UTC)
            found.append(ThroughputBucket(start, self.seconds, max(0, total - failed), failed))
        return found


def window(bucket_seconds: int, buckets: int, until: float | None) -> Window:
    """The window ending with the bucket that holds ``until`` (default: now)."""
    moment = utcnow().timestamp() if until is None else until
    last = math.floor(moment / bucket_seconds) * bucket_seconds
    return Window(last - bucket_seconds * (buckets - 1), bucket_seconds, buckets)


def count_in_python(
    window: Window, runs: Iterable[tuple[datetime, bool]]
) -> list[ThroughputBucket]:
    """Count ``(ended_at, failed)`` pairs into the window's buckets (the memory store)."""
    totals: dict[int, int] = {}
    failures: dict[int, int] = {}
    for ended_at, failed in runs:
        moment = ended_at.timestamp()
        if not window.first <= moment < window.end:
            continue
        slot = window.index(moment)
        totals[slot] = totals.get(slot, 0) + 1
        if failed:
            failures[slot] = failures.get(slot, 0) + 1
    return window.answer(totals, failures)
