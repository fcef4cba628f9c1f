"""Retentions and expiries no store can hold are refused where they enter (Manager, models)."""

from __future__ import annotations

import math
from typing import Any

import pytest

import cereal
from cereal.checks.validation import MAX_EXPIRY
from cereal.models import MAX_RETENTION_AGE, MAX_RETENTION_ROWS, HistoryRetention


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"max_rows": -1}, ValueError, "max_rows must be between 0"),
        ({"max_rows": MAX_RETENTION_ROWS + 1}, ValueError, "max_rows must be between 0"),
        ({"margin_rows": -5}, ValueError, "margin_rows must be between 0"),
        ({"max_rows": 2.5}, TypeError, "max_rows must be an int, got float"),
        ({"margin_rows": True}, TypeError, "margin_rows must be an int, got bool"),
        ({"max_age": -1.0}, ValueError, "max_age must be between 0"),
        ({"max_age": math.nan}, ValueError, "max_age must be between 0"),
        ({"max_age": math.inf}, ValueError, "max_age must be between 0"),
        ({"max_age": MAX_RETENTION_AGE * 2}, ValueError, "max_age must be between 0"),
        ({"max_age": "1 day"}, TypeError, "max_age must be a number of seconds, got str"),
    ],
)
def test_a_retention_out_of_bounds_is_refused_naming_the_field(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        HistoryRetention(**fields)


def test_retentions_at_the_bounds_are_accepted() -> None:
    assert HistoryRetention(max_rows=0, margin_rows=0, max_age=0.0).max_rows == 0
    assert HistoryRetention(max_rows=MAX_RETENTION_ROWS, max_age=MAX_RETENTION_AGE).max_age
    assert HistoryRetention(max_age=60).max_age == 60


@pytest.mark.parametrize("expiry", [0, -1.0, math.inf, MAX_EXPIRY + 1, 1e300])
def test_a_manager_refuses_a_task_expiry_no_store_can_hold(expiry: float) -> None:
    with pytest.raises(ValueError, match="task_expiry"):
        cereal.Manager(cereal.open_driver("memory://"), task_expiry=expiry)
