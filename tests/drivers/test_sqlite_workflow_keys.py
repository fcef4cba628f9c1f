"""SQLite: a run left waiting for its workflow concurrency key is started by the sweep.

A run's end starts the next waiting runs of its key in its own transaction;
a process of an earlier release ends runs without doing so, and the sweep's
claim release step starts them (migration 0024).
"""

from __future__ import annotations

import sqlite3

from cereal.drivers.sqlite import SQLiteDriver

WF = "wf"


def started_and_waiting(db_path: str) -> tuple[list[str], list[str]]:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT instance_name, waiting_for_key FROM cereal_workflow_instances"
            " WHERE concurrency_key = 'k' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [n for n, w in rows if not w], [n for n, w in rows if w]


async def test_a_run_left_waiting_by_an_older_process_is_started_by_the_sweep(
    db_path: str,
) -> None:
    async with SQLiteDriver(db_path) as driver:
        await driver.enqueue_keyed_workflow(WF, "first", None, "k", 1)
        await driver.enqueue_keyed_workflow(WF, "second", None, "k", 1)
        # Given the started run deleted as a process of an earlier release finishes it
        old = sqlite3.connect(db_path, isolation_level=None)
        old.execute("DELETE FROM cereal_workflow_instances WHERE instance_name = 'first'")
        old.close()
        assert started_and_waiting(db_path) == ([], ["second"])
        assert await driver.claim_workflows([WF]) == []

        # Then the next sweep step starts the waiting run, ready with its start event
        await driver.release_stale_claims(60)
        assert started_and_waiting(db_path) == (["second"], [])
        [(events, completer)] = await driver.claim_workflows([WF])
        assert events[0].instance.instance_name == "second"
        await completer.close()


async def test_a_waiting_run_stays_unready_when_an_event_arrives(db_path: str) -> None:
    async with SQLiteDriver(db_path) as driver:
        await driver.enqueue_keyed_workflow(WF, "first", None, "k", 1)
        await driver.enqueue_keyed_workflow(WF, "second", None, "k", 1)
        # an event appended by any process (the trigger marks instances ready)
        await driver.cancel_workflow(WF, "second")
        [(events, completer)] = await driver.claim_workflows([WF], max_instances=5)
        assert events[0].instance.instance_name == "first"
        await completer.close()
