"""Five-field cron expressions, translated to the RRULE a schedule stores.

``minute hour day-of-month month day-of-week``, each field ``*``, a number, a
range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of these;
months and weekdays also by English three-letter names (``JAN``, ``MON``);
weekday 0 and 7 are Sunday. The macros ``@yearly`` (``@annually``),
``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly`` are
accepted too. Times are UTC, as for every rule without a TZID.

One cron rule has no RRULE equivalent: when both day fields are restricted
(neither starts with ``*``) cron fires on days matching *either*; an RRULE
can only ask for both. Such expressions are refused with that explanation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cereal import errors

__all__ = ["looks_like_cron", "to_rrule"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_RRULE_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")
_ITEM = re.compile(r"(?P<range>\*|[0-9A-Z]+(?:-[0-9A-Z]+)?)(?:/(?P<step>\d+))?")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the value low + i
    name_offset: int = 0

    def value(self, token: str) -> int:
        if token.isdigit():
            number = int(token)
        elif token in self.names:
            number = self.names.index(token) + self.name_offset
        else:
            raise ValueError(f"{self.name} has {token!r}, not a number or name")
        if not self.low <= number <= self.high:
            raise ValueError(f"{self.name} must be in {self.low}..{self.high}, got {number}")
        return number

    def expand(self, text: str) -> set[int]:
        found: set[int] = set()
        for item in text.split(","):
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ValueError(f"{self.name} item {item!r} is not N, A-B, */N or A-B/N")
            span, step_text = match.group("range"), match.group("step")
            step = int(step_text) if step_text is not None else 1
            if step < 1:
                raise ValueError(f"{self.name} step must be at least 1, got {step}")
            if span == "*":
                first, last = self.low, self.high
            elif "-" in span:
                first, last = (self.value(token) for token in span.split("-"))
                if first > last:
                    raise ValueError(f"{self.name} range {span!r} runs backwards")
            else:
                first = self.value(span)
                last = self.high if step_text is not None else first  # "a/n": a..max by n
            found.update(range(first, last + 1, step))
        return found


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS, 1)
_WEEKDAY = _Field("day of week", 0, 7, _WEEKDAYS, 0)


def looks_like_cron(text: str) -> bool:
    """True for a one-line text of five space-separated fields, or a ``@`` macro.

    An RRULE always has ``=``, so the two never overlap.
    """
    stripped = text.strip()
    if stripped.lower() in _MACROS:
        return True
    return "=" not in stripped and "\n" not in stripped and len(stripped.split()) == 5


def _numbers(values: set[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


def to_rrule(text: str) -> str:
    """The RRULE (``FREQ=...``) firing at the same UTC times as the cron expression.

    Raises:
        InvalidScheduleError: the expression is malformed, or restricts both
            day fields (cron's "either day" has no RRULE form); the message says which.
    """
    expression = _MACROS.get(text.strip().lower(), text.strip())
    try:
        return _translate(expression.upper().split())
    except ValueError as exc:
        raise errors.InvalidScheduleError(f"invalid cron expression {text!r}: {exc}") from None


def _translate(fields: list[str]) -> str:
    if len(fields) != 5:
        raise ValueError("a cron expression has 5 fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    minutes, hours = _MINUTE.expand(minute), _HOUR.expand(hour)
    days, months = _DAY.expand(day), _MONTH.expand(month)
    weekdays = {number % 7 for number in _WEEKDAY.expand(weekday)}
    by_day = not day.startswith("*") and days != set(range(1, 32))
    by_weekday = not weekday.startswith("*") and weekdays != set(range(7))
    if by_day and by_weekday:
        raise ValueError(
            "it restricts both the day of month and the day of week, which cron reads as "
            "'either day'; an RRULE cannot say 'either': use two schedules"
        )
    by_month = months != set(range(1, 13))
    every_minute, every_hour = len(minutes) == 60, len(hours) == 24
    if every_minute:
        freq = "MINUTELY"
    elif every_hour:
        freq = "HOURLY"
    elif by_month and (by_day or by_weekday):
        freq = "YEARLY"
    elif by_day:
        freq = "MONTHLY"
    elif by_weekday:
        freq = "WEEKLY"
    else:
        freq = "DAILY"
    parts = [f"FREQ={freq}"]
    if by_month:
        parts.append(f"BYMONTH={_numbers(months)}")
    if by_day:
        parts.append(f"BYMONTHDAY={_numbers(days)}")
    if by_weekday:
        parts.append("BYDAY=" + ",".join(_RRULE_DAYS[number] for number in sorted(weekdays)))
    if not every_hour:
        parts.append(f"BYHOUR={_numbers(hours)}")
    if not every_minute:
        parts.append(f"BYMINUTE={_numbers(minutes)}")
    parts.append("BYSECOND=0")
    return ";".join(parts)
