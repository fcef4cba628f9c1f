"""A SQLite store holding a task that a sweep reported LOST for its invalid stored retry policy."""

from __future__ import annotations

import sqlite3

from cereal.drivers.sqlite import SQLiteDriver
from cereal.models import NewTask
from tests.conformance._driver_helpers import started, sweep

BAD_POLICY = (
    '{"max_attempts": 2.5, "initial_backoff": 1, "max_backoff": 10, "multiplier": 2, "jitter": 0}'
)


async def lose_a_task_to_a_bad_policy(path: str, workflow: str, instance: str) -> str:
    """Run ``workflow``/``instance`` with one task, poison its policy by SQL, expire and sweep.

    Returns the task's id. The instance stays live with the LOST event handled or not.
    """
    driver = SQLiteDriver(path)
    await driver.init()
    try:
        await started(driver, workflow, instance, tasks=[NewTask("bad", b"1")])
        [(data, _)] = await driver.dequeue_tasks("bad", 1, task_expiry=3600)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            conn.execute(
                "UPDATE cereal_tasks SET retry_policy = ?,"
                " lease_heartbeat_at = lease_heartbeat_at - 7200",
                (BAD_POLICY,),
            )
        finally:
            conn.close()
        report = await sweep(driver, task_expiry=3600)
        assert report.expired_tasks == 1, report
    finally:
        await driver.close()
    return data.metadata.task_id
