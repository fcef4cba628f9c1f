"""The sweeper loop outlives a sweep that fails in any way (issue 17, point 4)."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from cereal.drivers import Driver
from cereal.engine.sweeper import run_sweeper
from cereal.models import SweepReport


class FailsOnce:
    """A driver stand-in whose first sweep raises a non-cereal error, the next ones succeed."""

    def __init__(self) -> None:
        self.calls = 0
        self.second = asyncio.Event()

    async def sweep(self, task_expiry: float) -> SweepReport:
        self.calls += 1
        if self.calls == 1:
            raise OverflowError("date value out of range")
        self.second.set()
        return SweepReport()


async def test_a_sweep_raising_an_unexpected_error_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = FailsOnce()
    sweeper = asyncio.create_task(run_sweeper(cast(Driver, driver), task_expiry=0.2))
    second = asyncio.create_task(driver.second.wait())
    try:
        done, _ = await asyncio.wait({sweeper, second}, return_when=asyncio.FIRST_COMPLETED)
        assert second in done, f"the sweeper ended: {sweeper.exception()!r}"
    finally:
        sweeper.cancel()
        second.cancel()
        await asyncio.gather(sweeper, second, return_exceptions=True)
    assert any(
        record.levelno == logging.ERROR and "maintenance sweep failed" in record.getMessage()
        for record in caplog.records
    )
