"""The history retention a store records as applied: when a sweep's retention is new.

Stores keep the retention their sweeps apply as rules (``RetentionRule``), so
the CLI and the dashboard can show what trims the history. A sweep rewrites
them only when its retention differs from the recorded one, so the rules'
``applied_at`` says since when this retention has been in effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cereal.models import HistoryRetention, RetentionRule, rules_of

_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _values(rule: RetentionRule) -> tuple[object, ...]:
    return (rule.workflow_name, rule.max_rows, rule.margin_rows, rule.max_runs, rule.max_age)


def retention_changed(recorded: list[RetentionRule], retention: HistoryRetention) -> bool:
    """Whether ``retention`` differs from the ``recorded`` rules (their times aside)."""
    wanted = rules_of(retention, _NO_TIME)
    return [_values(rule) for rule in recorded] != [_values(rule) for rule in wanted]


def rule_from_row(row: Mapping[str, Any], applied_at: datetime) -> RetentionRule:
    """A recorded rule as a store reads it (the store-wide one under the name ``''``)."""
    return RetentionRule(
        workflow_name=str(row["workflow_name"]) or None,
        max_rows=row["max_rows"],
        margin_rows=row["margin_rows"],
        max_runs=row["max_runs"],
        max_age=row["max_age"],
        applied_at=applied_at,
    )
