"""The sweeper loop outlives a sweep that fails in any way (issue 17, point 4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from cereal.drivers.base import MaintenanceStore
from cereal.engine.sweeper import run_sweeper
from cereal.models import ExpiredLease, HistoryRetention, LeaseSettlement


class FailsOnce(MaintenanceStore):
    """A store whose every operation raises a non-cereal error in the first sweep only."""

    def __init__(self) -> None:
        self.retention = HistoryRetention()
        self.sweeps = 0
        self.second = asyncio.Event()

    def _fail_first(self) -> None:
        if self.sweeps == 1:
            raise OverflowError("date value out of range")

    async def expired_task_leases(self, task_expiry: float, limit: int) -> list[ExpiredLease]:
        self.sweeps += 1
        if self.sweeps == 2:
            self.second.set()
        self._fail_first()
        return []

    async def settle_expired_leases(
        self, settlements: Sequence[LeaseSettlement], *, task_expiry: float
    ) -> list[str]:
        raise AssertionError("nothing expired, so nothing is settled")

    async def release_stale_claims(self, task_expiry: float) -> int:
        self._fail_first()
        return 0

    async def trim_history(self, retention: HistoryRetention) -> int:
        self._fail_first()
        return 0


async def test_a_sweep_raising_unexpected_errors_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailsOnce()
    sweeper = asyncio.create_task(run_sweeper(store, task_expiry=0.2))
    second = asyncio.create_task(store.second.wait())
    try:
        done, _ = await asyncio.wait({sweeper, second}, return_when=asyncio.FIRST_COMPLETED)
        assert second in done, f"the sweeper ended: {sweeper.exception()!r}"
    finally:
        sweeper.cancel()
        second.cancel()
        await asyncio.gather(sweeper, second, return_exceptions=True)
    failed = {
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and "date value out of range" in str(record.exc_info)
    }
    # each of the first sweep's three steps failed on its own, and was logged at ERROR
    assert failed == {
        "sweep step 'expire leases' failed; the other steps still run",
        "sweep step 'release stale claims' failed; the other steps still run",
        "sweep step 'trim history' failed; the other steps still run",
    }
