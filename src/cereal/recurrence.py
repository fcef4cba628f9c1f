"""Recurrence rules (RFC 5545 RRULE) for schedules, evaluated with python-dateutil.

Accepted: ``DTSTART[;TZID=Zone]:YYYYMMDD[THHMMSS[Z]]`` plus ``RRULE:FREQ=...``
on two lines; one line with optional ``RRULE:`` and optional ``DTSTART=`` part
(``FREQ=SECONDLY;DTSTART=20190102T030405Z;INTERVAL=10``, the 2019 Go form); or
a dateutil ``rrule`` (naive DTSTART taken as UTC). FREQ is mandatory; unknown or
repeated keys, empty values and COUNT with UNTIL are refused. A time with
neither ``Z`` nor TZID is UTC; ``TZID=Local`` is stored as the process's zone.
A five-field cron expression (``0 3 * * *``, see :mod:`cereal.checks.cron`) is
accepted too and stored as the RRULE it translates to.
:func:`normalize` gives the stored text (``FREQ=...``, or a ``DTSTART:...Z`` or
``DTSTART;TZID=Zone:...`` line and an ``RRULE:`` line; Go's key order; UNTIL in
UTC), a fixed point of itself. Rules work at second precision.

Daylight-saving time: a rule with a TZID follows that zone's wall clock, so a
daily 09:00 rule fires at 09:00 local on both sides of a change (its UTC time
moves by an hour). The problem cases follow RFC 5545 section 3.3.5, as Go's
``time.Date`` and calendar programs do:

* a wall time that does not exist (spring-forward gap: 02:30 on 2021-03-14 in
  America/New_York) takes the UTC offset from before the gap: it moves forward
  by the gap's length and fires at 03:30 EDT (07:30 UTC), late but not lost;
* a wall time that occurs twice (fall-back: 01:30 on 2021-11-07 in New York)
  fires once, at its first occurrence (01:30 EDT, 05:30 UTC).

Both come from resolving wall times with PEP 495 ``fold=0`` on zoneinfo zones.
Rules repeating within a day follow the wall clock too: an hourly rule skips
the repeated hour at fall-back, and wall times that meet on one instant in the
gap fire once. Use a UTC DTSTART to count elapsed time instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import tz
from dateutil.rrule import rrule, rrulestr

from cereal import errors
from cereal.checks import cron, times

__all__ = ["next_after", "normalize"]

logger = logging.getLogger(__name__)

_KEYS = (
    "FREQ", "INTERVAL", "WKST", "COUNT", "UNTIL", "BYSETPOS", "BYMONTH", "BYMONTHDAY",
    "BYYEARDAY", "BYWEEKNO", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND", "BYEASTER",
)  # fmt: skip
_FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY")
# Seconds per period of a fixed wall-clock length: such rules can skip ahead whole periods.
_PERIOD = {"WEEKLY": 604_800, "DAILY": 86_400, "HOURLY": 3_600, "MINUTELY": 60, "SECONDLY": 1}
_CHECKS = {
    "FREQ": ("|".join(_FREQS), "one of " + ", ".join(_FREQS)),
    "INTERVAL": (r"0*[1-9]\d*", "a positive integer"),
    "COUNT": (r"\d+", "a non-negative integer"),
}
# Allowed values of the numeric BY parts (lists of integers); a signed range
# also allows the negated values. dateutil accepts some out-of-range values and
# fails only while iterating, so they are refused here.
_RANGES = {
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
}
# Keys that make the number of occurrences per period vary or differ from one.
_BY_KEYS = tuple(key for key in _KEYS if key.startswith("BY"))
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?")


@dataclass(frozen=True)
class _Rule:
    parts: dict[str, str]  # upper-case key -> upper-case value; UNTIL already in UTC
    dtstart: datetime | None  # naive wall-clock time in ``zone``
    zone: str | None  # IANA name; None means UTC

    def body(self) -> str:
        return ";".join(f"{key}={self.parts[key]}" for key in _KEYS if key in self.parts)

    def text(self) -> str:
        if self.dtstart is None:
            return self.body()
        stamp = _stamp(self.dtstart)
        head = f"DTSTART:{stamp}Z" if self.zone is None else f"DTSTART;TZID={self.zone}:{stamp}"
        return f"{head}\nRRULE:{self.body()}"


def normalize(recurrence: str | rrule) -> str:
    """Validate a recurrence and return the text to store (a fixed point of normalize).

    Args:
        recurrence: an RRULE string in an accepted form, a five-field cron
            expression (stored as its RRULE, in UTC), or a dateutil ``rrule``.

    Raises:
        TypeError: if ``recurrence`` is neither a ``str`` nor an ``rrule``.
        InvalidScheduleError: if it does not parse; the message names the problem.
    """
    if isinstance(recurrence, rrule):
        recurrence = _from_rrule(recurrence)
    elif not isinstance(recurrence, str):
        raise TypeError(f"recurrence must be a str or an rrule, not {type(recurrence).__name__}")
    elif cron.looks_like_cron(recurrence):
        recurrence = cron.to_rrule(recurrence)
    rule = _parse(recurrence)
    reference = rule.dtstart or datetime(2000, 1, 1)
    _build(rule, reference.replace(tzinfo=_zone(rule.zone)))  # dateutil checks the values
    return rule.text()


def next_after(recurrence: str, now: datetime, *, inclusive: bool = True) -> datetime | None:
    """The first occurrence at or after ``now``, truncated to the second.

    A rule without DTSTART starts at ``now``: it is due at once, then every
    INTERVAL measured from each evaluation (as in Go).

    Args:
        recurrence: a rule as :func:`normalize` accepts it (normally its result).
        now: an aware datetime.
        inclusive: False gives the first occurrence strictly after ``now``, as a
            scheduler needs once it has fired the occurrence at ``now``.

    Returns:
        An aware UTC datetime, or None when COUNT or UNTIL has run out.

    Raises:
        InvalidScheduleError: if the rule does not parse.
    """
    rule = _parse(recurrence)
    limit_t = times.to_utc(now, name="now").replace(microsecond=0)
    try:
        return _search(rule, limit_t, inclusive)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # dateutil checks some values only while iterating (BYHOUR=25 passes rrulestr)
        raise errors.InvalidScheduleError(f"invalid recurrence {recurrence!r}: {exc}") from None


def _search(rule: _Rule, limit_t: datetime, inclusive: bool) -> datetime | None:
    zone = _zone(rule.zone)
    start = rule.dtstart if rule.dtstart is not None else limit_t.replace(tzinfo=None)
    freq = rule.parts["FREQ"]
    counted = "COUNT" in rule.parts
    # One occurrence per period: COUNT can be skipped ahead by arithmetic too.
    if freq in _PERIOD and not (counted and any(key in rule.parts for key in _BY_KEYS)):
        step = timedelta(seconds=_PERIOD[freq] * int(rule.parts.get("INTERVAL", "1")))
        start, skipped = _skip_ahead(start, step, zone, limit_t)
        if counted:
            left = int(rule.parts["COUNT"]) - skipped
            if left <= 0:
                return None
            rule = _Rule({**rule.parts, "COUNT": str(left)}, rule.dtstart, rule.zone)
    found: datetime | None = None
    horizon: datetime | None = None
    for occurrence in _build(rule, start.replace(tzinfo=zone, fold=0)):
        wall = occurrence.replace(tzinfo=None)
        if horizon is not None and wall >= horizon:
            break
        instant = occurrence.astimezone(UTC)  # fold=0: the DST policy of the module docstring
        if instant > limit_t or (inclusive and instant == limit_t):
            found = instant if found is None else min(found, instant)
            if horizon is None:
                # A time moved forward out of a gap can be later than the wall times
                # that follow it, for up to the gap's length: look that far.
                gap = instant - occurrence.replace(fold=1).astimezone(UTC)
                horizon = wall + max(gap, timedelta(0))
    return found


def _parse(text: str) -> _Rule:
    try:
        return _parse_rule(text)
    except ValueError as exc:
        raise errors.InvalidScheduleError(f"invalid recurrence {text!r}: {exc}") from None


def _parse_rule(text: str) -> _Rule:
    """Split and check a rule string; the values themselves are checked by dateutil."""
    dtstart_line: str | None = None
    rule_line: str | None = None
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        if line.upper().startswith(("DTSTART:", "DTSTART;")):
            if dtstart_line is not None:
                raise ValueError("more than one DTSTART line")
            dtstart_line = line
        elif rule_line is not None:
            raise ValueError("more than one RRULE line")
        else:
            rule_line = line[6:] if line.upper().startswith("RRULE:") else line
    if rule_line is None:
        raise ValueError("no RRULE line (FREQ=...)")
    if "=" not in rule_line:
        raise ValueError(
            "not an RRULE (KEY=VALUE parts such as FREQ=DAILY;BYHOUR=3) "
            "nor a 5-field cron expression (such as '0 3 * * *')"
        )
    parts: dict[str, str] = {}
    for item in rule_line.split(";"):
        key, sep, value = (piece.strip() for piece in item.partition("="))
        key = key.upper()
        if not sep or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        if not value:
            raise ValueError(f"{key} has an empty value")
        if key == "DTSTART" and dtstart_line is None:
            dtstart_line = f"DTSTART:{value}"
        elif key in parts or key == "DTSTART":
            raise ValueError(f"{key} is given twice")
        elif key not in _KEYS:
            raise ValueError(f"unknown key {key}")
        else:
            parts[key] = value.upper()
    if "FREQ" not in parts:
        raise ValueError("FREQ is missing")
    for key, (pattern, what) in _CHECKS.items():
        if key in parts and not re.fullmatch(pattern, parts[key]):
            raise ValueError(f"{key} must be {what}, got {parts[key]!r}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("COUNT and UNTIL cannot be used together")
    for key, (low, high, signed) in _RANGES.items():
        if key in parts:
            _check_range(key, parts[key], low, high, signed)
    dtstart, zone = _parse_dtstart(dtstart_line) if dtstart_line else (None, None)
    if "UNTIL" in parts:
        until, is_utc = _parse_stamp(parts["UNTIL"], "UNTIL")
        if not is_utc:  # a floating UNTIL is in DTSTART's zone
            until = until.replace(tzinfo=_zone(zone)).astimezone(UTC).replace(tzinfo=None)
        parts["UNTIL"] = _stamp(until) + "Z"
    return _Rule(parts, dtstart, zone)


def _check_range(key: str, value: str, low: int, high: int, signed: bool) -> None:
    for item in value.split(","):
        number = item.strip().removeprefix("+") if signed else item.strip()
        if not re.fullmatch(r"-?\d+" if signed else r"\d+", number):
            raise ValueError(f"{key} must be a list of integers, got {value!r}")
        if not low <= abs(int(number)) <= high:
            what = f"{low}..{high}" + (f" or -{high}..-{low}" if signed else "")
            raise ValueError(f"{key} values must be in {what}, got {item.strip()}")


def _parse_dtstart(line: str) -> tuple[datetime, str | None]:
    head, _, value = line.partition(":")
    zone: str | None = None
    for param in head.split(";")[1:]:
        key, _, name = param.partition("=")
        if key.strip().upper() != "TZID" or not name.strip() or zone is not None:
            raise ValueError(f"unsupported DTSTART parameter {param!r} (only TZID=Zone)")
        zone = name.strip()
    wall, is_utc = _parse_stamp(value.strip(), "DTSTART")
    if zone is None:
        return wall, None
    if is_utc:
        raise ValueError("a DTSTART with TZID must be a local time (no Z)")
    if zone.upper() == "LOCAL":
        local = _local_zone()
        if local is None:  # no IANA name to store: keep the instant
            return wall.replace(tzinfo=tz.tzlocal()).astimezone(UTC).replace(tzinfo=None), None
        return wall, local
    if not _known_zone(zone):
        raise ValueError(f"unknown time zone {zone!r}")
    return wall, zone


def _parse_stamp(value: str, what: str) -> tuple[datetime, bool]:
    match = _STAMP.fullmatch(value.upper())
    if match is None:
        raise ValueError(f"{what} must be YYYYMMDD[THHMMSS[Z]], got {value!r}")
    year, month, day, hour, minute, second = (int(field or 0) for field in match.groups()[:6])
    try:
        stamp = datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not a valid time: {exc}") from exc
    return stamp, match.group(7) == "Z"


def _build(rule: _Rule, start: datetime) -> rrule:
    try:
        built = rrulestr(rule.body(), dtstart=start)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise errors.InvalidScheduleError(f"invalid recurrence {rule.text()!r}: {exc}") from exc
    assert isinstance(built, rrule)  # one RRULE line never gives an rruleset
    return built


def _skip_ahead(
    start: datetime, step: timedelta, zone: tzinfo, now: datetime
) -> tuple[datetime, int]:
    """Move a fixed-period rule's start by whole periods to shortly before ``now``.

    Later occurrences do not change (same grid, same defaults from DTSTART).
    Returns the new start and the number of periods skipped.
    """
    offsets = [(now + timedelta(days=d)).astimezone(zone).utcoffset() for d in (-1, 0, 1)]
    lowest_wall = now.replace(tzinfo=None) + min(o or timedelta(0) for o in offsets)
    periods = (lowest_wall - start) // step - 1
    return (start + periods * step, periods) if periods > 0 else (start, 0)


def _from_rrule(rule: rrule) -> str:
    start: datetime = getattr(rule, "_dtstart")  # noqa: B009 - not in the type stubs
    until: datetime | None = getattr(rule, "_until")  # noqa: B009
    name = _zone_name(start.tzinfo) if start.tzinfo is not None else None
    if name is None and start.tzinfo is not None:
        start = start.astimezone(UTC)
    line = str(rule).splitlines()[-1].removeprefix("RRULE:")
    body = [part for part in line.split(";") if not part.startswith("UNTIL=")]
    if until is not None:
        body.append(f"UNTIL={_stamp(until.astimezone(UTC) if until.tzinfo else until)}Z")
    return _Rule({}, start, name).text() + ";".join(body)  # DTSTART line, "RRULE:", body


def _zone_name(zone: tzinfo) -> str | None:
    """The IANA name of ``zone``; None for a fixed offset (stored as UTC)."""
    if isinstance(zone, ZoneInfo) and zone.key:
        return zone.key
    if isinstance(zone, tz.tzlocal):
        return _local_zone()
    filename = getattr(zone, "_filename", None)  # zones from dateutil.tz.gettz
    if isinstance(filename, str):
        name = filename.partition("/zoneinfo/")[2] or filename
        if _known_zone(name):
            return name
    if isinstance(zone, timezone | tz.tzutc | tz.tzoffset):
        return None
    raise errors.InvalidScheduleError(f"DTSTART zone {zone!r} has no IANA name: use a ZoneInfo")


def _local_zone() -> str | None:
    """The IANA name of the process's zone (from TZ or /etc/localtime), if it has one."""
    tz_name = os.environ.get("TZ", "").lstrip(":")
    linked = os.path.realpath("/etc/localtime").partition("/zoneinfo/")[2]
    return next((name for name in (tz_name, linked) if name and _known_zone(name)), None)


def _known_zone(name: str) -> bool:
    try:
        return bool(ZoneInfo(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False


def _zone(name: str | None) -> tzinfo:
    return UTC if name is None else ZoneInfo(name)


def _stamp(value: datetime) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}T{value:%H%M%S}"


EVALUATION_BUDGET = 5.0
"""Seconds one next-occurrence search may take before the rule is refused."""


class _SearchStopped(BaseException):
    """Raised inside a search thread whose caller gave up, to end the search."""


@dataclass
class _SearchState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    searching: bool = True


async def next_after_off_loop(
    recurrence: str, now: datetime, *, inclusive: bool = True, budget: float = EVALUATION_BUDGET
) -> datetime | None:
    """:func:`next_after` in a worker thread, refused if it takes longer than ``budget``.

    dateutil scans a rule that can never match (``FREQ=HOURLY;BYSETPOS=3``,
    February 30th) year by year up to 9999, which can take minutes; running it
    off the event loop keeps the Manager responsive, and the budget turns such
    a rule into a clear error. A search past its budget is stopped: an
    exception is raised inside its thread (dateutil is pure Python, so it
    lands at once), so no abandoned search keeps a core busy.

    Raises:
        InvalidScheduleError: the rule does not parse, or its search ran out of budget.
    """
    loop = asyncio.get_running_loop()
    search: asyncio.Future[datetime | None] = loop.create_future()
    state = _SearchState()

    def settle(outcome: datetime | None, failure: BaseException | None) -> None:
        if search.done():
            return
        if failure is None:
            search.set_result(outcome)
        else:
            search.set_exception(failure)

    def work() -> None:
        try:
            try:
                outcome, failure = next_after(recurrence, now, inclusive=inclusive), None
            except _SearchStopped:
                return
            except BaseException as exc:
                outcome, failure = None, exc
            with state.lock:
                state.searching = False
            try:
                loop.call_soon_threadsafe(settle, outcome, failure)
            except RuntimeError:  # the loop closed while the search ran on
                pass
        except _SearchStopped:  # the stop landed just after the search ended
            return

    # A daemon thread, not the loop's executor: asyncio.run would wait for it at exit.
    thread = threading.Thread(target=work, name="cereal-rrule-search", daemon=True)
    thread.start()
    try:
        return await asyncio.wait_for(search, timeout=budget)
    except TimeoutError:
        raise errors.InvalidScheduleError(
            f"recurrence {recurrence!r} found no occurrence within {budget:g} s of searching; "
            "it probably can never fire"
        ) from None
    finally:
        _stop_search(thread, state)


def _stop_search(thread: threading.Thread, state: _SearchState) -> None:
    """End a search still running (its caller timed out or was cancelled).

    CPython can raise an exception in another thread; dateutil's search is
    pure Python, so it lands at its next bytecode. Elsewhere the search runs
    to its end (dateutil stops at year 9999), and a WARNING says so.
    """
    with state.lock:
        if not state.searching or thread.ident is None:
            return
        state.searching = False
        set_async_exc = getattr(
            getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None
        )
        if set_async_exc is None:
            stopped = 0
        else:
            stopped = set_async_exc(ctypes.c_ulong(thread.ident), ctypes.py_object(_SearchStopped))
            if stopped > 1:  # never expected: undo rather than hit other threads
                set_async_exc(ctypes.c_ulong(thread.ident), None)
    if stopped != 1:
        logger.warning(
            "could not stop a recurrence search that ran out of its budget; "
            "it runs on in a daemon thread until dateutil gives up",
        )
