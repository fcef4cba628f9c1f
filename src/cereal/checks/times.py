"""Durations and instants: one normaliser for seconds, one clock, one aware-UTC rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def seconds(value: float | timedelta, *, name: str = "duration") -> float:
    """Return ``value`` in seconds; accepts a number of seconds or a ``timedelta``.

    Raises:
        TypeError: if ``value`` is neither.
        ValueError: if it is negative or not finite.
    """
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    else:
        raise TypeError(
            f"{name} must be seconds (int/float) or a timedelta, got {type(value).__name__}"
        )
    if result != result or result in (float("inf"), float("-inf")) or result < 0:
        raise ValueError(f"{name} must be a finite, non-negative duration, got {value!r}")
    return result


def optional_seconds(value: float | timedelta | None, *, name: str) -> float | None:
    """Like :func:`seconds`, passing ``None`` through."""
    return None if value is None else seconds(value, name=name)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def to_utc(value: datetime, *, name: str = "time") -> datetime:
    """Return an aware datetime in UTC; a naive one is refused (it would be ambiguous)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def from_epoch(value: float) -> datetime:
    """A UTC datetime from seconds since the epoch (how SQLite stores instants)."""
    return datetime.fromtimestamp(value, UTC)


def to_epoch(value: datetime) -> float:
    """Seconds since the epoch of an aware datetime."""
    return value.timestamp()
