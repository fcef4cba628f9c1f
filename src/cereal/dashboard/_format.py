"""How values look on the dashboard: JSON bytes, instants and ages (Jinja filters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cereal.checks.times import utcnow


def json_text(value: bytes | None) -> str:
    """Stored JSON bytes, indented for reading; ``None`` (no value) as an empty string."""
    if value is None:
        return ""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value.decode("utf-8", "replace")
    return json.dumps(decoded, indent=2, ensure_ascii=False, sort_keys=True)


def instant(value: datetime | None) -> str:
    """An aware instant as UTC to the second, e.g. ``2026-01-31 12:00:05Z``; ``None`` as ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was, e.g. ``42s``, ``3m 5s``, ``2h 1m``, ``4d 3h``."""
    if value is None:
        return "-"
    seconds = max(0, int(((now or utcnow()) - value).total_seconds()))
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d {hrs}h"
    if hours:
        return f"{hours}h {mins}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
