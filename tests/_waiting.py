"""Waiting for a condition instead of sleeping: poll until it holds, fail clearly at a deadline.

Tests synchronise on what they can observe (a row, a wakeup, a log line, the
clock having passed a stored instant), never on a fixed sleep. The deadlines
are generous because the machine may be loaded; a healthy run returns as soon
as the condition holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from cereal.checks.times import utcnow
from cereal.drivers import Driver
from cereal.engine.sweep import sweep_store

DEADLINE = 15.0
_POLL = 0.01


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool],
    *,
    what: str,
    timeout: float = DEADLINE,
) -> None:
    """Poll ``predicate`` (plain or async) until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for: {what}")
        await asyncio.sleep(_POLL)


async def wait_for_value(
    read: Callable[[], Awaitable[Any] | Any],
    expected: Any,
    *,
    what: str,
    timeout: float = DEADLINE,
) -> None:
    """Poll ``read`` (plain or async) until it returns ``expected``; fail showing the last read.

    For what is produced after the store changed (a callback count, a metric,
    an observer call): wait on that value itself, not on the related store state.
    """
    last: list[Any] = []

    async def matches() -> bool:
        value = read()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        last[:] = [value]
        return bool(value == expected)

    try:
        await wait_until(matches, what=what, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; expected {expected!r}, last read {last[0]!r}") from None


async def wait_for_record(
    caplog: pytest.LogCaptureFixture,
    predicate: Callable[[logging.LogRecord], bool],
    *,
    what: str,
    timeout: float = DEADLINE,
) -> logging.LogRecord:
    """Wait until a captured log record satisfies ``predicate``; returns the first that does."""
    found: list[logging.LogRecord] = []

    def logged() -> bool:
        found[:] = [record for record in caplog.records if predicate(record)][:1]
        return bool(found)

    try:
        await wait_until(logged, what=what, timeout=timeout)
    except AssertionError as exc:
        seen = [record.getMessage() for record in caplog.records]
        raise AssertionError(f"{exc}; records seen: {seen}") from None
    return found[0]


def wait_until_sync(predicate: Callable[[], bool], *, what: str, timeout: float = DEADLINE) -> None:
    """:func:`wait_until` for code outside an event loop (threads, process supervisors)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for: {what}")
        time.sleep(_POLL)


async def wait_past(instant: datetime, seconds: float = 0.0) -> None:
    """Wait until the clock reads later than ``instant + seconds`` (a row older than a limit)."""
    target = instant + timedelta(seconds=seconds)
    await wait_until(lambda: utcnow() > target, what=f"the clock to pass {target.isoformat()}")


async def sweep_until(driver: Driver, counter: str, expected: int, *, task_expiry: float) -> None:
    """Sweep until ``counter`` of the reports adds up to ``expected`` (fail if it overshoots).

    What a sweep removes depends on the clock having moved past a stored
    instant; polling waits for exactly that instead of sleeping a fixed time.
    """
    total = 0

    async def reached() -> bool:
        nonlocal total
        total += int(getattr(await sweep_store(driver, task_expiry), counter))
        return total >= expected

    await wait_until(reached, what=f"sweeps to report {counter}={expected}")
    assert total == expected
