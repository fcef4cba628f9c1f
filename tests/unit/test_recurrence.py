"""cereal.recurrence: accepted forms, errors, evaluation, and the DST policy on real dates."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz
from dateutil.rrule import DAILY, HOURLY, SECONDLY, rrule, rruleset, rrulestr

from cereal import errors, recurrence
from cereal.recurrence import next_after, normalize

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


# ---- normalize: accepted forms ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        # two-line form, UTC
        (
            "DTSTART:20190102T030405Z\nRRULE:FREQ=SECONDLY;INTERVAL=10",
            "DTSTART:20190102T030405Z\nRRULE:FREQ=SECONDLY;INTERVAL=10",
        ),
        # two-line form with a zone
        (
            "DTSTART;TZID=America/New_York:20190102T030405\nRRULE:FREQ=DAILY",
            "DTSTART;TZID=America/New_York:20190102T030405\nRRULE:FREQ=DAILY",
        ),
        # the 2019 Go one-line form with a DTSTART attribute
        (
            "FREQ=SECONDLY;DTSTART=20190102T030405Z;INTERVAL=10",
            "DTSTART:20190102T030405Z\nRRULE:FREQ=SECONDLY;INTERVAL=10",
        ),
        (
            "RRULE:FREQ=SECONDLY;DTSTART=20190102T030405Z",
            "DTSTART:20190102T030405Z\nRRULE:FREQ=SECONDLY",
        ),
        # plain and prefixed forms without DTSTART
        ("FREQ=SECONDLY;INTERVAL=10", "FREQ=SECONDLY;INTERVAL=10"),
        ("RRULE:FREQ=SECONDLY;INTERVAL=10", "FREQ=SECONDLY;INTERVAL=10"),
        # case-insensitive keys and values; keys in the Go order
        ("interval=2;byhour=9;freq=daily", "FREQ=DAILY;INTERVAL=2;BYHOUR=9"),
        # floating and date-only times are UTC; UNTIL is stored in UTC
        (
            "DTSTART:20190102T030405\nRRULE:FREQ=DAILY;UNTIL=20190110",
            "DTSTART:20190102T030405Z\nRRULE:FREQ=DAILY;UNTIL=20190110T000000Z",
        ),
        (
            "DTSTART:20190102\nRRULE:FREQ=DAILY;COUNT=3",
            "DTSTART:20190102T000000Z\nRRULE:FREQ=DAILY;COUNT=3",
        ),
        # a floating UNTIL under a TZID is in that zone
        (
            "DTSTART;TZID=America/New_York:20210101T090000\nRRULE:FREQ=DAILY;UNTIL=20210103T090000",
            "DTSTART;TZID=America/New_York:20210101T090000\nRRULE:FREQ=DAILY;UNTIL=20210103T140000Z",
        ),
        # the lines may come in either order, with surrounding blanks
        (
            "  RRULE:FREQ=WEEKLY;BYDAY=MO,+1TU\n\nDTSTART:20210104T080000Z  ",
            "DTSTART:20210104T080000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,+1TU",
        ),
        ("FREQ=YEARLY;BYEASTER=0;WKST=SU", "FREQ=YEARLY;WKST=SU;BYEASTER=0"),
    ],
)
def test_normalize_accepts_the_go_forms(given: str, stored: str) -> None:
    assert normalize(given) == stored


@pytest.mark.parametrize(
    "text",
    [
        "DTSTART:20190102T030405Z\nRRULE:FREQ=SECONDLY;INTERVAL=10",
        "FREQ=SECONDLY;DTSTART=20190102T030405Z;INTERVAL=10",
        "DTSTART;TZID=Europe/Berlin:20210328T023000\nRRULE:FREQ=DAILY;BYHOUR=2,9;BYMINUTE=30",
        "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23;BYMINUTE=59;BYSECOND=59",
        "DTSTART:20210101T000000Z\nRRULE:FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=-1;UNTIL=20300101T000000Z",
    ],
)
def test_normalized_text_is_a_fixed_point_with_the_same_occurrences(text: str) -> None:
    stored = normalize(text)

    assert normalize(stored) == stored
    for now in (utc(2021, 3, 1), utc(2021, 10, 30, 23, 59, 59), utc(2026, 1, 1, 12, 0, 0)):
        assert next_after(stored, now) == next_after(text, now)


def test_tzid_local_is_stored_as_the_process_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")

    stored = normalize("DTSTART;TZID=Local:20210101T090000\nRRULE:FREQ=DAILY")

    assert stored == "DTSTART;TZID=Europe/Berlin:20210101T090000\nRRULE:FREQ=DAILY"


def test_tzid_local_without_a_zone_name_keeps_the_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recurrence, "_local_zone", lambda: None)
    wall = datetime(2021, 1, 1, 9)
    instant = wall.replace(tzinfo=tz.tzlocal()).astimezone(UTC)

    stored = normalize("DTSTART;TZID=Local:20210101T090000\nRRULE:FREQ=DAILY")

    assert stored == f"DTSTART:{instant:%Y%m%dT%H%M%S}Z\nRRULE:FREQ=DAILY"


# ---- normalize: rrule objects -------------------------------------------------------------


class _Unnamed(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


@pytest.mark.parametrize(
    ("rule", "stored"),
    [
        # a naive DTSTART is UTC; microseconds are dropped
        (
            rrule(SECONDLY, interval=10, dtstart=datetime(2019, 1, 2, 3, 4, 5, 678)),
            "DTSTART:20190102T030405Z\nRRULE:FREQ=SECONDLY;INTERVAL=10",
        ),
        (
            rrule(DAILY, dtstart=datetime(2021, 1, 1, 9, tzinfo=BERLIN), count=3),
            "DTSTART;TZID=Europe/Berlin:20210101T090000\nRRULE:FREQ=DAILY;COUNT=3",
        ),
        (
            rrule(DAILY, dtstart=datetime(2021, 1, 1, 9, tzinfo=tz.gettz("America/New_York"))),
            "DTSTART;TZID=America/New_York:20210101T090000\nRRULE:FREQ=DAILY",
        ),
        (
            rrule(
                DAILY,
                dtstart=datetime(2021, 1, 1, 9, tzinfo=NY),
                until=datetime(2021, 2, 1, 12, tzinfo=NY),
                byhour=(9, 17),
            ),
            "DTSTART;TZID=America/New_York:20210101T090000\n"
            "RRULE:FREQ=DAILY;UNTIL=20210201T170000Z;BYHOUR=9,17",
        ),
        (
            rrule(DAILY, dtstart=datetime(2021, 1, 1), until=datetime(2021, 1, 5)),
            "DTSTART:20210101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20210105T000000Z",
        ),
        # fixed offsets have no DST: stored as the UTC instant
        (
            rrule(HOURLY, dtstart=datetime(2021, 1, 1, 9, tzinfo=timezone(timedelta(hours=2)))),
            "DTSTART:20210101T070000Z\nRRULE:FREQ=HOURLY",
        ),
        (
            rrule(HOURLY, dtstart=datetime(2021, 1, 1, 9, tzinfo=tz.tzoffset(None, -3600))),
            "DTSTART:20210101T100000Z\nRRULE:FREQ=HOURLY",
        ),
    ],
)
def test_normalize_takes_an_rrule(rule: rrule, stored: str) -> None:
    assert normalize(rule) == stored
    assert normalize(stored) == stored


def test_an_rrule_in_a_zone_without_a_name_is_refused() -> None:
    rule = rrule(DAILY, dtstart=datetime(2021, 1, 1, 9, tzinfo=_Unnamed()))

    with pytest.raises(errors.InvalidScheduleError, match="no IANA name"):
        normalize(rule)


@pytest.mark.parametrize("value", [None, 5, b"FREQ=DAILY", rruleset()])
def test_normalize_refuses_other_types(value: object) -> None:
    with pytest.raises(TypeError, match="recurrence must be a str or an rrule"):
        normalize(value)  # type: ignore[arg-type]


# ---- normalize: errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no RRULE line"),
        ("DTSTART:20190102T030405Z", "no RRULE line"),
        ("INTERVAL=10", "FREQ is missing"),
        ("FREQ=FORTNIGHTLY", "FREQ must be one of"),
        ("FREQ=DAILY;FOO=1", "unknown key FOO"),
        ("FREQ=DAILY;BYWEEKDAY=MO", "unknown key BYWEEKDAY"),
        ("FREQ=DAILY;INTERVAL=", "INTERVAL has an empty value"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a positive integer"),
        ("FREQ=DAILY;INTERVAL=-2", "INTERVAL must be a positive integer"),
        ("FREQ=DAILY;COUNT=-1", "COUNT must be a non-negative integer"),
        ("FREQ=DAILY;", "is not KEY=VALUE"),
        ("FREQ=DAILY;INTERVAL", "is not KEY=VALUE"),
        ("FREQ=DAILY;FREQ=HOURLY", "FREQ is given twice"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20300101T000000Z", "COUNT and UNTIL"),
        ("FREQ=DAILY;BYDAY=XX", "BYDAY"),
        ("FREQ=DAILY;BYHOUR=25", "BYHOUR values must be in 0..23"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL must be YYYYMMDD"),
        ("DTSTART:2019-01-02\nRRULE:FREQ=DAILY", "DTSTART must be YYYYMMDD"),
        ("DTSTART:20190230T000000Z\nRRULE:FREQ=DAILY", "not a valid time"),
        ("DTSTART;TZID=Nowhere/Atlantis:20190102T030405\nRRULE:FREQ=DAILY", "unknown time zone"),
        ("DTSTART;TZID=Europe/Berlin:20190102T030405Z\nRRULE:FREQ=DAILY", "must be a local time"),
        ("DTSTART;VALUE=DATE:20190102\nRRULE:FREQ=DAILY", "unsupported DTSTART parameter"),
        ("DTSTART:20190102T030405Z\nDTSTART:20190102T030405Z\nRRULE:FREQ=DAILY", "more than one"),
        ("FREQ=DAILY\nFREQ=HOURLY", "more than one RRULE line"),
        ("DTSTART:20190102T030405Z\nRRULE:FREQ=DAILY;DTSTART=20190102T030405Z", "given twice"),
    ],
)
def test_normalize_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(errors.InvalidScheduleError, match="invalid recurrence") as raised:
        normalize(text)

    assert problem in str(raised.value)


# ---- next_after -----------------------------------------------------------------------------


def test_next_after_is_inclusive_and_at_second_precision() -> None:
    rule = "DTSTART:20210101T000000Z\nRRULE:FREQ=SECONDLY;INTERVAL=10"

    assert next_after(rule, utc(2021, 1, 1, 0, 0, 10)) == utc(2021, 1, 1, 0, 0, 10)
    assert next_after(rule, utc(2021, 1, 1, 0, 0, 10).replace(microsecond=500_000)) == utc(
        2021, 1, 1, 0, 0, 10
    )
    assert next_after(rule, utc(2021, 1, 1, 0, 0, 10), inclusive=False) == utc(2021, 1, 1, 0, 0, 20)
    assert next_after(rule, utc(2021, 1, 1, 0, 0, 11)) == utc(2021, 1, 1, 0, 0, 20)
    assert next_after(rule, utc(2020, 6, 1)) == utc(2021, 1, 1)  # before DTSTART: DTSTART


def test_next_after_returns_utc_for_an_aware_now_in_any_zone() -> None:
    rule = "DTSTART:20210101T000000Z\nRRULE:FREQ=HOURLY"

    found = next_after(rule, datetime(2021, 6, 1, 12, 30, tzinfo=BERLIN))

    assert found == utc(2021, 6, 1, 11)
    assert found is not None and found.tzinfo is UTC


def test_next_after_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_after("FREQ=DAILY", datetime(2021, 1, 1))


def test_next_after_raises_for_an_invalid_rule() -> None:
    with pytest.raises(errors.InvalidScheduleError):
        next_after("FREQ=SOMETIMES", utc(2021, 1, 1))


def test_a_rule_without_dtstart_is_due_at_once_then_every_interval() -> None:
    now = utc(2021, 5, 6, 7, 8, 9).replace(microsecond=123_456)

    assert next_after("FREQ=SECONDLY;INTERVAL=30", now) == now.replace(microsecond=0)
    assert next_after("FREQ=DAILY", now) == now.replace(microsecond=0)
    assert next_after("FREQ=SECONDLY;INTERVAL=30", now, inclusive=False) == utc(
        2021, 5, 6, 7, 8, 39
    )


def test_count_runs_out() -> None:
    rule = "DTSTART:20210101T000000Z\nRRULE:FREQ=DAILY;COUNT=3"

    assert next_after(rule, utc(2021, 1, 2, 12)) == utc(2021, 1, 3)
    assert next_after(rule, utc(2021, 1, 3), inclusive=False) is None
    assert next_after(rule, utc(2030, 1, 1)) is None
    assert next_after("DTSTART:20210101T000000Z\nRRULE:FREQ=DAILY;COUNT=0", utc(2020, 1, 1)) is None


def test_until_runs_out_and_is_inclusive() -> None:
    rule = "DTSTART:20210101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20210103T000000Z"

    assert next_after(rule, utc(2021, 1, 3)) == utc(2021, 1, 3)
    assert next_after(rule, utc(2021, 1, 3, 0, 0, 1)) is None


def test_a_rule_started_years_ago_is_evaluated_quickly_and_on_its_grid() -> None:
    # The 2019 Go form, one occurrence every 10 s since 2019: tens of millions
    # of occurrences that must not be walked one by one.
    rule = "FREQ=SECONDLY;DTSTART=20190102T030405Z;INTERVAL=10"
    now = utc(2026, 11, 27, 20, 54, 42).replace(microsecond=927_872)

    assert next_after(rule, now) == utc(2026, 11, 27, 20, 54, 45)
    assert next_after(rule, utc(2026, 11, 27, 20, 54, 45), inclusive=False) == utc(
        2026, 11, 27, 20, 54, 55
    )


def _brute_force(text: str, now: datetime, *, inclusive: bool) -> datetime | None:
    """The earliest instant among every occurrence from DTSTART on (no skipping ahead)."""
    head, _, body = normalize(text).rpartition("RRULE:")
    zone = ZoneInfo(head.split("TZID=")[1].split(":")[0]) if "TZID=" in head else UTC
    match = re.search(r"\d{8}T\d{6}", head)
    assert match is not None
    wall = datetime.strptime(match.group(), "%Y%m%dT%H%M%S")
    instants = []
    for occurrence in rrulestr(body, dtstart=wall.replace(tzinfo=zone)):
        if occurrence.replace(tzinfo=None) > now.replace(tzinfo=None) + timedelta(days=2):
            break
        instant = occurrence.astimezone(UTC)
        if instant > now or (inclusive and instant == now):
            instants.append(instant)
    return min(instants, default=None)


_NEW_YORK_RULES = [
    "DTSTART:20210313T001234Z\nRRULE:FREQ=SECONDLY;INTERVAL=7",
    "DTSTART;TZID=America/New_York:20210313T001234\nRRULE:FREQ=SECONDLY;INTERVAL=7",
    "DTSTART;TZID=America/New_York:20210310T001234\nRRULE:FREQ=MINUTELY;INTERVAL=13;BYHOUR=1,2,3",
    "DTSTART;TZID=America/New_York:20210301T023000\nRRULE:FREQ=DAILY;INTERVAL=3",
    "DTSTART;TZID=America/New_York:20210301T000000\nRRULE:FREQ=DAILY;BYHOUR=1,2,3;BYSETPOS=-1",
]
_BERLIN_RULES = [
    "DTSTART;TZID=Europe/Berlin:20210327T001234\nRRULE:FREQ=SECONDLY;INTERVAL=7",
    "DTSTART;TZID=Europe/Berlin:20210320T001234\nRRULE:FREQ=HOURLY;INTERVAL=5;BYMINUTE=15,45",
    "DTSTART;TZID=Europe/Berlin:20210301T023000\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=SU,MO;WKST=SU",
]
# Just before and just after each spring-forward change.
_NEW_YORK_NOWS = [utc(2021, 3, 14, 6, 59, 59), utc(2021, 3, 14, 7, 6, 30)]
_BERLIN_NOWS = [utc(2021, 3, 28, 0, 45), utc(2021, 3, 28, 1, 0, 1)]


@pytest.mark.parametrize(
    ("text", "now"),
    [(text, now) for text in _NEW_YORK_RULES for now in _NEW_YORK_NOWS]
    + [(text, now) for text in _BERLIN_RULES for now in _BERLIN_NOWS],
)
@pytest.mark.parametrize("inclusive", [True, False])
def test_skipping_ahead_matches_walking_every_occurrence(
    text: str, now: datetime, inclusive: bool
) -> None:
    expected = _brute_force(text, now, inclusive=inclusive)

    assert next_after(text, now, inclusive=inclusive) == expected


# ---- daylight-saving time, on real transitions ------------------------------------------------


def _series(rule: str, start: datetime, count: int) -> list[datetime]:
    """``count`` successive firings: the first at or after ``start``, then strictly after."""
    found = next_after(rule, start)
    series = []
    while found is not None and len(series) < count:
        series.append(found)
        found = next_after(rule, found, inclusive=False)
    return series


def test_new_york_spring_forward_gap_fires_shifted_by_the_gap() -> None:
    # 2021-03-14: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist.
    rule = "DTSTART;TZID=America/New_York:20210310T023000\nRRULE:FREQ=DAILY"

    assert _series(rule, utc(2021, 3, 13), 3) == [
        utc(2021, 3, 13, 7, 30),  # 02:30 EST
        utc(2021, 3, 14, 7, 30),  # the nonexistent 02:30 fires at 03:30 EDT
        utc(2021, 3, 15, 6, 30),  # 02:30 EDT
    ]
    assert utc(2021, 3, 14, 7, 30).astimezone(NY).hour == 3


def test_new_york_fall_back_ambiguous_time_fires_once_at_its_first_occurrence() -> None:
    # 2021-11-07: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice.
    rule = "DTSTART;TZID=America/New_York:20211105T013000\nRRULE:FREQ=DAILY"

    assert _series(rule, utc(2021, 11, 6), 3) == [
        utc(2021, 11, 6, 5, 30),  # 01:30 EDT
        utc(2021, 11, 7, 5, 30),  # the first 01:30 (EDT); the second (06:30 UTC) never fires
        utc(2021, 11, 8, 6, 30),  # 01:30 EST
    ]
    assert next_after(rule, utc(2021, 11, 7, 5, 30, 1)) == utc(2021, 11, 8, 6, 30)


def test_berlin_spring_forward_gap_fires_shifted_by_the_gap() -> None:
    # 2021-03-28: 02:00 CET jumps to 03:00 CEST.
    rule = "DTSTART;TZID=Europe/Berlin:20210325T023000\nRRULE:FREQ=DAILY"

    assert _series(rule, utc(2021, 3, 27), 3) == [
        utc(2021, 3, 27, 1, 30),  # 02:30 CET
        utc(2021, 3, 28, 1, 30),  # the nonexistent 02:30 fires at 03:30 CEST
        utc(2021, 3, 29, 0, 30),  # 02:30 CEST
    ]


def test_berlin_fall_back_ambiguous_time_fires_once_at_its_first_occurrence() -> None:
    # 2021-10-31: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice.
    rule = "DTSTART;TZID=Europe/Berlin:20211028T023000\nRRULE:FREQ=DAILY"

    assert _series(rule, utc(2021, 10, 30), 3) == [
        utc(2021, 10, 30, 0, 30),  # 02:30 CEST
        utc(2021, 10, 31, 0, 30),  # the first 02:30 (CEST) only
        utc(2021, 11, 1, 1, 30),  # 02:30 CET
    ]


@pytest.mark.parametrize(
    ("zone", "start", "utc_hours"),
    [
        ("America/New_York", utc(2021, 3, 13), [14, 13, 13]),
        ("America/New_York", utc(2021, 11, 6), [13, 14, 14]),
        ("Europe/Berlin", utc(2021, 3, 27), [8, 7, 7]),
        ("Europe/Berlin", utc(2021, 10, 30), [7, 8, 8]),
    ],
)
def test_a_daily_9am_rule_stays_at_9am_local_across_a_change(
    zone: str, start: datetime, utc_hours: list[int]
) -> None:
    rule = f"DTSTART;TZID={zone}:20210101T090000\nRRULE:FREQ=DAILY"

    series = _series(rule, start, 3)

    assert [found.hour for found in series] == utc_hours
    assert all(found.astimezone(ZoneInfo(zone)).hour == 9 for found in series)
    assert [found.date() for found in series] == [
        (start + timedelta(days=day)).date() for day in range(3)
    ]


def test_an_hourly_zoned_rule_fires_once_per_instant_in_the_gap() -> None:
    rule = "DTSTART;TZID=America/New_York:20210313T003000\nRRULE:FREQ=HOURLY"

    assert _series(rule, utc(2021, 3, 14, 6), 3) == [
        utc(2021, 3, 14, 6, 30),  # 01:30 EST
        utc(2021, 3, 14, 7, 30),  # 02:30 shifted to 03:30 EDT, the same instant as 03:30 EDT
        utc(2021, 3, 14, 8, 30),  # 04:30 EDT
    ]


def test_an_hourly_zoned_rule_skips_the_repeated_hour_at_fall_back() -> None:
    rule = "DTSTART;TZID=America/New_York:20211106T003000\nRRULE:FREQ=HOURLY"

    assert _series(rule, utc(2021, 11, 7, 4), 3) == [
        utc(2021, 11, 7, 4, 30),  # 00:30 EDT
        utc(2021, 11, 7, 5, 30),  # 01:30 EDT (01:30 EST at 06:30 UTC does not fire)
        utc(2021, 11, 7, 7, 30),  # 02:30 EST
    ]


def test_a_shifted_gap_time_does_not_hide_an_earlier_instant_after_the_gap() -> None:
    # Every 7 minutes from 01:58 EST: 02:12 (shifted to 07:12 UTC) comes before
    # 03:08 EDT (07:08 UTC) in wall-clock order, but fires later.
    rule = "DTSTART;TZID=America/New_York:20210314T015800\nRRULE:FREQ=MINUTELY;INTERVAL=7"

    assert next_after(rule, utc(2021, 3, 14, 7, 6)) == utc(2021, 3, 14, 7, 8)


async def test_a_rule_that_never_fires_is_refused_within_the_budget_off_the_loop() -> None:
    # Given a rule dateutil would scan year by year to 9999 (February 30th)
    rule = "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(ticker())
    # When its next occurrence is searched with a small budget
    with pytest.raises(errors.InvalidScheduleError, match="can never fire"):
        await recurrence.next_after_off_loop(rule, datetime(2026, 1, 1, tzinfo=UTC), budget=0.3)
    beat.cancel()
    # Then the event loop kept running meanwhile
    assert ticks > 0


def _searches() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cereal-rrule-search" and t.is_alive()]


async def _no_search_left() -> bool:
    deadline = time.monotonic() + 15
    while _searches() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return not _searches()


async def test_a_search_past_its_budget_is_stopped_not_left_running() -> None:
    # Given a rule dateutil would scan hour by hour to 9999 (no third time in an hour)
    rule = "DTSTART:20200101T000000Z\nRRULE:FREQ=HOURLY;BYSETPOS=3"
    assert await _no_search_left()
    # When three searches run out of their budget
    for _ in range(3):
        with pytest.raises(errors.InvalidScheduleError, match="can never fire"):
            await recurrence.next_after_off_loop(rule, utc(2026, 1, 1), budget=0.05)
    # Then no search thread is left burning CPU
    assert await _no_search_left()


def test_a_huge_count_on_a_fixed_period_is_evaluated_without_walking_it() -> None:
    rule = "DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=4000000000"

    assert next_after(rule, utc(2026, 1, 1, 0, 0, 0, 500)) == utc(2026, 1, 1)
    assert next_after(rule, utc(2026, 1, 1), inclusive=False) == utc(2026, 1, 1, 0, 0, 1)
    # COUNT=3 from 2020 ran out long ago; the 4th second is not an occurrence
    assert (
        next_after("DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=3", utc(2026, 1, 1)) is None
    )
    assert next_after(
        "DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=3", utc(2020, 1, 1, 0, 0, 1)
    ) == utc(2020, 1, 1, 0, 0, 1)
    assert (
        next_after(
            "DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=3", utc(2020, 1, 1, 0, 0, 3)
        )
        is None
    )


async def test_a_count_rule_too_long_to_walk_is_refused_by_the_budget_and_stopped() -> None:
    # BYMINUTE keeps dateutil walking every matching second since 2020: no
    # arithmetic skip applies, so only the time budget bounds the search
    rule = "DTSTART:20200101T000000Z\nRRULE:FREQ=SECONDLY;BYMINUTE=0;COUNT=4000000000"

    with pytest.raises(errors.InvalidScheduleError, match=r"within 0\.2 s"):
        await recurrence.next_after_off_loop(rule, utc(2026, 1, 1), budget=0.2)

    assert await _no_search_left()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("FREQ=MINUTELY;BYHOUR=25", "BYHOUR"),
        ("FREQ=HOURLY;BYMINUTE=60", "BYMINUTE"),
        ("FREQ=MINUTELY;BYSECOND=61", "BYSECOND"),
        ("FREQ=DAILY;BYMONTH=13", "BYMONTH"),
        ("FREQ=DAILY;BYMONTHDAY=32", "BYMONTHDAY"),
        ("FREQ=DAILY;BYMONTHDAY=0", "BYMONTHDAY"),
        ("FREQ=YEARLY;BYYEARDAY=367", "BYYEARDAY"),
        ("FREQ=YEARLY;BYWEEKNO=54", "BYWEEKNO"),
        ("FREQ=DAILY;BYSETPOS=0", "BYSETPOS"),
        ("FREQ=DAILY;BYHOUR=x", "BYHOUR"),
    ],
)
def test_out_of_range_by_values_are_refused_up_front(body: str, key: str) -> None:
    with pytest.raises(errors.InvalidScheduleError, match=key):
        normalize(body)
    with pytest.raises(errors.InvalidScheduleError, match=key):
        next_after(body, utc(2026, 1, 1))


def test_a_count_rule_with_more_than_a_hundred_thousand_past_occurrences_still_fires() -> None:
    # 70 days of minutes (about 100 800 occurrences) lie before "now": a rule
    # that was valid when created must keep firing as its past grows
    rule = "DTSTART:20260101T000000Z\nRRULE:FREQ=MINUTELY;BYSECOND=0;COUNT=1000000"

    assert next_after(rule, utc(2026, 3, 12, 0, 0, 30)) == utc(2026, 3, 12, 0, 1)
