"""Workflow concurrency keys, around the edges: wakeups of the runs a run's end starts,
the sweep over many keys, and an earlier release sharing the store.

A run started from waiting must be claimed promptly: announced to every
process (PostgreSQL NOTIFY) and woken in this one, whatever ended the run
before it. The sweep starts runs an earlier release left waiting, going round
every key however many are full; an earlier release's requeue cannot start a
keyed failed run outside its key.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from cereal.checks.times import utcnow
from cereal.drivers import Driver
from cereal.drivers.memory import MemoryDriver
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres import _base as pg_base
from cereal.drivers.sqlite import SQLiteDriver
from tests.drivers._listening import (
    BARRIER_WAKE,
    Heard,
    heard_eventually,
    listen_with,
    send_barrier,
)

# ---- wakeups ----------------------------------------------------------------------------


async def test_a_run_started_by_a_completion_is_announced_everywhere(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        here, there = Heard(), Heard()
        await listen_with(sender, here)
        await listen_with(other, there)
        # Given a started run of key k (limit 1) and a run of another workflow waiting for it
        await sender.enqueue_keyed_workflow("w1", "a", None, "k", 1)
        await sender.enqueue_keyed_workflow("w2", "b", None, "k", 1)
        [(_, completer)] = await sender.claim_workflows(["w1"])
        here.calls.clear()
        there.calls.clear()

        # When the started run completes
        await completer.done(None)
        assert not (await sender.get_workflow_instance("w2", "b")).waiting_for_key

        # Then w2's runners are woken here and in the other process (every NOTIFY
        # committed before the barrier arrives before it)
        await send_barrier(postgres_dsn)
        await heard_eventually(here, BARRIER_WAKE)
        await heard_eventually(there, BARRIER_WAKE)
        assert ("workflow", "w2") in there.calls, there.calls
        assert ("workflow", "w2") in here.calls, here.calls


async def test_without_notify_a_completion_wakes_this_process_for_the_run_it_started(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        heard = Heard()
        driver.add_wakeup_listener(heard)
        await driver.enqueue_keyed_workflow("w1", "a", None, "k", 1)
        await driver.enqueue_keyed_workflow("w2", "b", None, "k", 1)
        [(_, completer)] = await driver.claim_workflows(["w1"])
        heard.calls.clear()

        await completer.done(None)

        assert ("workflow", "w2") in heard.calls, heard.calls


async def _replacement_wakes(driver: Driver) -> Heard:
    """A schedule replacing its keyed run: what the store's listeners heard."""
    heard = Heard()
    driver.add_wakeup_listener(heard)
    due = (utcnow() + timedelta(minutes=30)).replace(microsecond=0)
    await driver.create_workflow_schedule(
        "w1", "s", b'"p"', True, "FREQ=SECONDLY;INTERVAL=10", due, overlap="terminate_other"
    )
    # the schedule's live run is under key k (limit 1); a run of w2 waits for it
    await driver.enqueue_keyed_workflow("w1", "s", None, "k", 1)
    await driver.enqueue_keyed_workflow("w2", "b", None, "k", 1)
    heard.calls.clear()
    await driver.trigger_workflow_schedule("w1", "s", "replaced")
    assert not (await driver.get_workflow_instance("w2", "b")).waiting_for_key
    return heard


async def test_a_schedule_replacement_wakes_the_run_it_started_memory() -> None:
    async with MemoryDriver() as driver:
        heard = await _replacement_wakes(driver)
    assert ("workflow", "w2") in heard.calls, heard.calls


async def test_a_schedule_replacement_wakes_the_run_it_started_sqlite(db_path: str) -> None:
    async with SQLiteDriver(db_path) as driver:
        heard = await _replacement_wakes(driver)
    assert ("workflow", "w2") in heard.calls, heard.calls


async def test_a_schedule_replacement_wakes_the_run_it_started_postgres(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        heard = await _replacement_wakes(driver)
    assert ("workflow", "w2") in heard.calls, heard.calls


# ---- the sweep, over many keys ---------------------------------------------------------------


async def _full_keys_and_z(driver: Driver) -> None:
    """101 keys of limit 1, each with a started run and a waiting one ("z" sorts last)."""
    for n in range(100):
        await driver.enqueue_keyed_workflow("wf", f"a{n:03}-1", None, f"a{n:03}", 1)
        await driver.enqueue_keyed_workflow("wf", f"a{n:03}-2", None, f"a{n:03}", 1)
    await driver.enqueue_keyed_workflow("wf", "z-1", None, "z", 1)
    await driver.enqueue_keyed_workflow("wf", "z-2", None, "z", 1)


def _end_as_an_older_release(conn: Any) -> None:
    """Delete z's started run as a process of an earlier release ends it (nothing started)."""
    conn.execute("DELETE FROM cereal_workflow_instances WHERE instance_name = 'z-1'")


async def test_sweeps_go_round_every_key_sqlite(db_path: str) -> None:
    async with SQLiteDriver(db_path) as driver:
        await _full_keys_and_z(driver)
        old = sqlite3.connect(db_path, isolation_level=None)
        _end_as_an_older_release(old)
        old.close()
        # the first sweep looks at the first 100 keys (all full), the second goes on
        await driver.release_stale_claims(60)
        await driver.release_stale_claims(60)
        assert not (await driver.get_workflow_instance("wf", "z-2")).waiting_for_key


async def test_sweeps_go_round_every_key_postgres(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await _full_keys_and_z(driver)
        with psycopg.connect(postgres_dsn, autocommit=True) as old:
            _end_as_an_older_release(old)
        await driver.release_stale_claims(60)
        await driver.release_stale_claims(60)
        assert not (await driver.get_workflow_instance("wf", "z-2")).waiting_for_key


# ---- an earlier release's requeue ------------------------------------------------------------

EARLIER_REQUEUE_POSTGRES = """
WITH failed AS (
    UPDATE cereal_workflow_results AS r SET requeued_at = now()
    WHERE r.id = %(run_id)s AND r.error IS NOT NULL AND r.requeued_at IS NULL
    RETURNING r.workflow_name, r.instance_name, r.parameters
), inst AS (
    INSERT INTO cereal_workflow_instances (workflow_name, instance_name, parameters, ready_at)
    SELECT workflow_name, instance_name, parameters, now() FROM failed
    ON CONFLICT (workflow_name, instance_name) DO NOTHING
    RETURNING id, workflow_name
), ev AS (
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    SELECT id, workflow_name, 'start' FROM inst
    RETURNING instance_id
)
SELECT failed.workflow_name, (SELECT count(*) FROM ev) AS started FROM failed
"""
"""The requeue of a failed run before workflow concurrency keys (queries.sql, verbatim)."""


async def _failed_keyed_run(driver: Driver) -> str:
    """A failed run of key k (limit 1), and a started run holding the key's place; its id."""
    await driver.enqueue_keyed_workflow("wf", "f", None, "k", 1)
    [(_, completer)] = await driver.claim_workflows(["wf"])
    await completer.fail("boom")
    await driver.enqueue_keyed_workflow("wf", "s", None, "k", 1)
    [failed] = await driver.list_failed_runs()
    return failed.run_id


async def test_an_earlier_releases_requeue_of_a_keyed_run_is_refused_postgres(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        run_id = await _failed_keyed_run(driver)
        with (
            psycopg.connect(postgres_dsn, autocommit=True) as old,
            pytest.raises(psycopg.errors.RaiseException, match="concurrency key"),
        ):
            old.execute(EARLIER_REQUEUE_POSTGRES, {"run_id": int(run_id)})
        # nothing changed: the run is still a failed run, and this release requeues it
        [still] = await driver.list_failed_runs()
        assert still.run_id == run_id
        await driver.requeue_failed_runs([run_id])
        assert (await driver.get_workflow_instance("wf", "f")).waiting_for_key


async def test_an_earlier_releases_requeue_of_a_keyed_run_is_refused_sqlite(
    db_path: str,
) -> None:
    async with SQLiteDriver(db_path) as driver:
        run_id = await _failed_keyed_run(driver)
        old = sqlite3.connect(db_path, isolation_level=None)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="concurrency key"):
                old.execute(
                    "UPDATE cereal_workflow_results SET requeued_at = 1 WHERE id = ?",
                    (int(run_id),),
                )
        finally:
            old.close()
        await driver.requeue_failed_runs([run_id])
        assert (await driver.get_workflow_instance("wf", "f")).waiting_for_key


# ---- replacing or killing a waiting run -----------------------------------------------------


async def _replace_a_waiting_run(driver: Driver) -> bool:
    """A schedule replacing its waiting keyed run: whether the run behind it started."""
    due = (utcnow() + timedelta(minutes=30)).replace(microsecond=0)
    await driver.create_workflow_schedule(
        "w1", "s", b'"p"', True, "FREQ=SECONDLY;INTERVAL=10", due, overlap="terminate_other"
    )
    await driver.enqueue_keyed_workflow("w0", "a", None, "k", 1)  # started
    await driver.enqueue_keyed_workflow("w1", "s", None, "k", 1)  # waiting: the schedule's
    await driver.enqueue_keyed_workflow("w2", "b", None, "k", 2)  # waiting, fits its limit
    await driver.trigger_workflow_schedule("w1", "s", "replaced")
    return not (await driver.get_workflow_instance("w2", "b")).waiting_for_key


async def test_replacing_a_waiting_run_starts_the_one_behind_memory() -> None:
    async with MemoryDriver() as driver:
        assert await _replace_a_waiting_run(driver)


async def test_replacing_a_waiting_run_starts_the_one_behind_sqlite(db_path: str) -> None:
    async with SQLiteDriver(db_path) as driver:
        assert await _replace_a_waiting_run(driver)


async def test_replacing_a_waiting_run_starts_the_one_behind_postgres(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        assert await _replace_a_waiting_run(driver)


async def _end_the_session(dsn: str, conn: Any) -> None:
    """Terminate ``conn``'s server session from another one (as a server restart would)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        await other.execute("SELECT pg_terminate_backend(%s, 10000)", (conn.info.backend_pid,))


async def test_a_session_lost_after_a_decision_commits_fails_no_decision(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a group commit whose connection dies just after the decisions committed
    merged = pg_base.run_decisions_merged

    async def committed_then_lost(conn: Any, group: Any, note: Any, claim: Any = None) -> Any:
        committed = await merged(conn, group, note, claim)
        await _end_the_session(postgres_dsn, conn)
        return committed

    monkeypatch.setattr(pg_base, "run_decisions_merged", committed_then_lost)
    async with PostgresDriver(postgres_dsn) as driver:
        heard = Heard()
        driver.add_wakeup_listener(heard)
        await driver.enqueue_keyed_workflow("w1", "a", None, "k", 1)
        await driver.enqueue_keyed_workflow("w2", "b", None, "k", 1)
        [(_, completer)] = await driver.claim_workflows(["w1"])
        heard.calls.clear()

        # When the started run completes: the decision stands, the next run is started
        # and woken here
        await completer.done(None)
        assert (await driver.get_workflow_instance("w1", "a")).err is None
        assert not (await driver.get_workflow_instance("w2", "b")).waiting_for_key
        assert ("workflow", "w2") in heard.calls, heard.calls


async def test_a_kill_that_committed_is_reported_done_whatever_follows(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the start of the runs behind a killed waiting run failing (session lost)
    async def lost(conn: Any, keys: list[str]) -> list[str]:
        await _end_the_session(postgres_dsn, conn)
        await conn.execute("SELECT 1")
        return []

    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_keyed_workflow("w0", "s", None, "k", 2)
        await driver.enqueue_keyed_workflow("w0", "w1", None, "k", 1)
        await driver.enqueue_keyed_workflow("w0", "w2", None, "k", 2)
        with monkeypatch.context() as patched:
            patched.setattr(pg_base, "start_waiting_runs", lost)
            # When the waiting head is killed: the kill is done, reported so
            await driver.kill_workflow("w0", "w1", "killed")
        assert (await driver.get_workflow_instance("w0", "w1")).err == "killed"
        # Then the sweep starts the run behind it
        assert (await driver.get_workflow_instance("w0", "w2")).waiting_for_key
        await driver.release_stale_claims(60)
        assert not (await driver.get_workflow_instance("w0", "w2")).waiting_for_key
