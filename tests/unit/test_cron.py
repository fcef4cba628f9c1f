"""Five-field cron expressions: the RRULE each becomes, and the times it fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cereal import errors, recurrence
from cereal.checks.cron import looks_like_cron, to_rrule

START = datetime(2026, 11, 29, 9, 0, 30, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("cron", "rule"),
    [
        ("0 3 * * *", "FREQ=DAILY;BYHOUR=3;BYMINUTE=0;BYSECOND=0"),
        ("*/15 * * * *", "FREQ=HOURLY;BYMINUTE=0,15,30,45;BYSECOND=0"),
        ("* 3 * * *", "FREQ=MINUTELY;BYHOUR=3;BYSECOND=0"),
        ("0 9 * * mon-fri", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0"),
        ("5 4 * * 7", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=4;BYMINUTE=5;BYSECOND=0"),
        ("30 2 1,15 * *", "FREQ=MONTHLY;BYMONTHDAY=1,15;BYHOUR=2;BYMINUTE=30;BYSECOND=0"),
        ("0 12 * JUN *", "FREQ=DAILY;BYMONTH=6;BYHOUR=12;BYMINUTE=0;BYSECOND=0"),
        ("0 0 29 2 *", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=0;BYMINUTE=0;BYSECOND=0"),
        ("0 8-18/5 * * *", "FREQ=DAILY;BYHOUR=8,13,18;BYMINUTE=0;BYSECOND=0"),
        ("10/20 1 * * *", "FREQ=DAILY;BYHOUR=1;BYMINUTE=10,30,50;BYSECOND=0"),
        ("@daily", "FREQ=DAILY;BYHOUR=0;BYMINUTE=0;BYSECOND=0"),
        ("@weekly", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=0;BYMINUTE=0;BYSECOND=0"),
    ],
)
def test_translation(cron: str, rule: str) -> None:
    assert looks_like_cron(cron)
    assert to_rrule(cron) == rule
    assert recurrence.normalize(cron) == rule  # stored as the RRULE


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 3 * * *", [datetime(2026, 11, 30, 3), datetime(2026, 12, 1, 3)]),
        ("*/20 9 * * *", [datetime(2026, 11, 29, 9, 20), datetime(2026, 11, 29, 9, 40)]),
        ("0 9 * * 1-5", [datetime(2026, 11, 30, 9), datetime(2026, 12, 1, 9)]),
        ("0 0 29 2 *", [datetime(2028, 2, 29), datetime(2032, 2, 29)]),
    ],
)
def test_the_rule_fires_when_cron_would(cron: str, expected: list[datetime]) -> None:
    rule = recurrence.normalize(cron)
    found: list[datetime] = []
    now = START
    for _ in expected:
        due = recurrence.next_after(rule, now)
        assert due is not None
        found.append(due.replace(tzinfo=None))
        now = due + timedelta(seconds=1)
    assert found == expected


def test_rrules_are_not_taken_for_cron() -> None:
    assert not looks_like_cron("FREQ=DAILY;BYHOUR=3")
    assert not looks_like_cron("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY")
    assert not looks_like_cron("0 3 * *")


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("60 * * * *", "minute must be in 0..59, got 60"),
        ("0 24 * * *", "hour must be in 0..23, got 24"),
        ("0 0 0 * *", "day of month must be in 1..31, got 0"),
        ("0 0 * 13 *", "month must be in 1..12, got 13"),
        ("0 0 * * 8", "day of week must be in 0..7, got 8"),
        ("0 0 5-1 * *", "runs backwards"),
        ("*/0 * * * *", "step must be at least 1"),
        ("0 0 1 * 1", "both the day of month and the day of week"),
        ("0 0 * * NOPE", "day of week has 'NOPE'"),
        ("1,,2 * * * *", "is not N, A-B, */N or A-B/N"),
    ],
)
def test_invalid_cron_names_the_problem(cron: str, problem: str) -> None:
    with pytest.raises(errors.InvalidScheduleError, match="invalid cron expression") as raised:
        recurrence.normalize(cron)
    assert problem in str(raised.value)


def test_text_that_is_neither_says_what_is_accepted() -> None:
    with pytest.raises(errors.InvalidScheduleError, match="nor a 5-field cron expression"):
        recurrence.normalize("every night")
