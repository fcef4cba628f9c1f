"""SQLiteDriver specifics in one process: durability, migrations, locking, wakeups.

The generic contract is checked by tests/conformance on every driver; the
multi-process tests are in test_sqlite_multiprocess.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from cereal import errors
from cereal.checks.times import utcnow
from cereal.drivers import open_driver
from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import apply_migrations, label, migrations, split_statements
from cereal.drivers.sqlite._sql import Q
from cereal.models import (
    HistoryRetention,
    ListWorkflowFilter,
    NewTask,
    TaskData,
    WorkflowEventType,
)
from tests._waiting import DEADLINE, sweep_until, wait_past, wait_until
from tests.conformance._driver_helpers import sweep

ALL_MIGRATIONS = [label(m) for m in migrations()]
PACKAGE = Path(__file__).parents[2] / "src" / "cereal" / "drivers" / "sqlite"


def sqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cereal-sqlite")]


async def start_with_tasks(driver: SQLiteDriver, count: int, task_name: str = "t") -> None:
    await driver.enqueue_workflow("wf", "inst", b"{}")
    _, completer = await driver.dequeue_workflow(["wf"])
    async with completer:
        await completer.continue_(None, [NewTask(task_name, b"%d" % i) for i in range(count)])


# ---- durability and lifecycle ---------------------------------------------------------


async def test_everything_survives_close_and_reopen(db_path: str) -> None:
    first = SQLiteDriver(db_path)
    await first.init()
    await start_with_tasks(first, 2)
    await first.create_workflow_schedule("wf", "sched", b"[1]", True, "FREQ=HOURLY", utcnow())
    await first.enqueue_workflow("wf", "done", None)
    _, completer = await first.dequeue_workflow(["wf"])
    await completer.close()  # rolled back: the start event stays queued
    await first.close()

    second = SQLiteDriver(db_path)
    async with second:
        live = await second.get_workflow_instance("wf", "inst")
        assert live.is_running() and live.parameters == b"{}"
        claimed = await second.dequeue_tasks("t", 10)
        assert [task.parameters for task, _ in claimed] == [b"0", b"1"]
        (schedule,) = await second.list_workflow_schedules()
        assert (schedule.instance_name, schedule.parameters) == ("sched", b"[1]")
        event, completer = await second.dequeue_workflow(["wf"])
        async with completer:
            assert (event.type, event.instance.instance_name) == (WorkflowEventType.START, "done")
            await completer.done(b'"r"')
    async with SQLiteDriver(db_path) as third:
        finished = await third.get_workflow_instance("wf", "done")
        assert finished.get_result() == "r"


async def test_init_close_init_cycles_leave_no_thread(db_path: str) -> None:
    before = len(sqlite_threads())
    driver = SQLiteDriver(db_path)
    for round_ in range(3):
        await driver.init()
        await driver.init()  # shared by a second Manager
        await driver.enqueue_workflow("wf", f"i{round_}", None)
        await driver.close()
        assert driver.is_open
        await driver.close()
        assert not driver.is_open
        await driver.close()  # idempotent
    assert len(sqlite_threads()) == before
    async with driver:
        listed = await driver.list_workflow_instances(ListWorkflowFilter())
    assert [inst.instance_name for inst in listed] == ["i0", "i1", "i2"]


async def test_use_before_init_is_a_driver_error(db_path: str) -> None:
    with pytest.raises(errors.DriverError, match="not open"):
        await SQLiteDriver(db_path).enqueue_workflow("wf", "i", None)


async def test_unopenable_path_is_a_driver_error(tmp_path: Path) -> None:
    driver = SQLiteDriver(str(tmp_path / "missing" / "dir" / "cereal.db"))
    with pytest.raises(errors.DriverError, match="cannot open"):
        await driver.init()
    assert not driver.is_open


async def test_pragmas(drv: SQLiteDriver, db_path: str) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_options_from_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db?busy_timeout=1.5&synchronous=normal&busy_retries=0"
    driver = open_driver(url)
    assert isinstance(driver, SQLiteDriver)
    assert driver.path == f"{tmp_path}/x.db"
    assert driver._settings.busy_timeout == 1.5
    assert driver._settings.synchronous == "NORMAL"
    assert driver._settings.attempts == 1
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteDriver("x.db", synchronous="OFF; DROP TABLE x")
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteDriver("x.db", busy_timeout="soon")
    with pytest.raises(ValueError, match="busy_retries"):
        SQLiteDriver("x.db", busy_retries=1.5)


# ---- migrations -----------------------------------------------------------------------


async def test_migrate_from_empty_then_again_is_a_no_op(db_path: str) -> None:
    driver = SQLiteDriver(db_path)
    applied = await driver.migrate()
    assert applied == ALL_MIGRATIONS
    assert applied[:3] == ["0001_initial", "0002_lease_deadline", "0003_ready_instances"]
    assert await driver.migrate() == []
    async with driver:
        assert await driver.migrate() == []  # while open, too
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT version, name, length(checksum), applied_at > 0 FROM cereal_schema_migrations"
        ).fetchall()
    conn.close()
    assert rows == [(m.version, m.name, 64, 1) for m in migrations()]
    assert rows[:3] == [
        (1, "initial", 64, 1),
        (2, "lease_deadline", 64, 1),
        (3, "ready_instances", 64, 1),
    ]


async def test_a_migrate_waiting_on_another_process_mid_step_applies_only_what_is_left(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Why processes migrating one file at once apply each step exactly once, shown
    without racing processes: the pending step is read under the write lock."""
    caplog.set_level(logging.WARNING, logger="cereal")
    known = migrations()
    # Given another process committed the first two steps and is mid-way through the third
    seed = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(seed, known[:2])
    seed.close()

    def third_step_uncommitted(conn: sqlite3.Connection) -> None:
        for statement in split_statements(known[2].sql):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO cereal_schema_migrations (version, name, checksum, applied_at)"
            " VALUES (?, ?, ?, 1)",
            (known[2].version, known[2].name, known[2].checksum),
        )

    with WriteLock(db_path, inside=third_step_uncommitted) as lock:
        # When this process migrates meanwhile (it waits for the lock)
        driver = SQLiteDriver(db_path, busy_timeout=WAIT_PER_ATTEMPT, busy_retries=ATTEMPTS)
        migrating = asyncio.create_task(driver.migrate())
        await blocked_on_the_lock(caplog)
        assert not migrating.done()
        lock.release()  # the third step commits
        applied_here = await migrating

    # Then it applied only the steps after the third, each once, in order
    assert applied_here == ALL_MIGRATIONS[3:]
    with sqlite3.connect(db_path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM cereal_schema_migrations")]
    conn.close()
    assert sorted(versions) == [m.version for m in known]


async def test_changed_checksum_of_an_applied_migration_is_a_hard_error(db_path: str) -> None:
    await SQLiteDriver(db_path).migrate()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE cereal_schema_migrations SET checksum = 'edited' WHERE version = 1")
    conn.close()
    driver = SQLiteDriver(db_path)
    with pytest.raises(errors.DriverError, match=r"0001_initial.*checksum"):
        await driver.init()
    assert not driver.is_open
    assert sqlite_threads() == []


async def test_a_migration_from_a_newer_cereal_is_a_hard_error(db_path: str) -> None:
    await SQLiteDriver(db_path).migrate()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO cereal_schema_migrations VALUES (9999, 'future', 'x', 0)",
        )
    conn.close()
    with pytest.raises(errors.DriverError, match="newer cereal"):
        await SQLiteDriver(db_path).init()


def test_a_rerun_after_a_busy_error_still_reports_the_steps_committed_before_it(
    db_path: str,
) -> None:
    # Given a run that committed the first step, then failed (as on a busy lock)
    conn = sqlite3.connect(db_path, isolation_level=None)
    applied: list[str] = []
    apply_migrations(conn, migrations()[:1], applied)

    # When the connection runs the job again with the same list
    reported = apply_migrations(conn, migrations(), applied)
    conn.close()

    # Then every step applied by this caller is reported, each once
    assert reported == ALL_MIGRATIONS


async def test_a_version_1_file_with_held_leases_migrates_to_lease_deadlines(
    db_path: str,
) -> None:
    # Given a file at schema version 1 where one lease was heartbeated just now and
    # one 5 minutes ago
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert apply_migrations(conn, migrations()[:1]) == ["0001_initial"]
    now = time.time()
    instance = conn.execute(
        "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status,"
        " started_at, enqueued_tasks) VALUES ('wf', 'i', 'running', ?, 2)",
        (now,),
    ).lastrowid
    conn.executemany(
        "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
        " state, enqueued_at, start_after, lease_token, lease_heartbeat_at, attempt)"
        " VALUES (?, 'wf', 'i', ?, 'running', ?, ?, ?, ?, 1)",
        [(instance, "held", now, now, "a", now), (instance, "stale", now, now, "b", now - 300)],
    )
    conn.close()

    # When it is migrated
    later = await SQLiteDriver(db_path).migrate()
    assert later == ALL_MIGRATIONS[1:]
    assert later[:2] == ["0002_lease_deadline", "0003_ready_instances"]

    # Then no lease got an expiry: both are judged by the sweeper's own, as before, so a
    # sweeper with a 2-minute expiry expires only the one silent for 5 minutes
    with sqlite3.connect(db_path) as conn:
        expiries = dict(conn.execute("SELECT task_name, lease_expiry FROM cereal_tasks"))
    conn.close()
    assert expiries == {"held": None, "stale": None}
    async with SQLiteDriver(db_path) as driver:
        assert (await sweep(driver, 3600)).expired_tasks == 0
        assert (await sweep(driver, 120)).expired_tasks == 1
        event, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            assert event.task_result is not None
            assert (event.task_result.task_name, event.task_result.status) == ("stale", "lost")
            await completer.continue_(None, [])


def test_split_statements() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';');\n-- a comment; with a semicolon\nSELECT 1;\n"
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "-- a comment; with a semicolon\nSELECT 1;",
    ]
    with pytest.raises(ValueError, match="unfinished"):
        split_statements("SELECT 1;\nSELECT 2")


def test_every_query_is_used_and_every_used_query_exists() -> None:
    source = "".join(path.read_text() for path in PACKAGE.glob("*.py"))
    used = set(re.findall(r"""Q\[["']([a-z_]+)["']\]""", source))
    assert used == set(Q)


def test_sql_files_are_package_data() -> None:
    from importlib import resources

    folder = resources.files("cereal.drivers.sqlite")
    assert folder.joinpath("queries.sql").is_file()
    assert folder.joinpath("migrations").joinpath("0001_initial.sql").is_file()


# ---- locking --------------------------------------------------------------------------


class WriteLock:
    """The write lock held by a foreign connection (on a thread) until :meth:`release`."""

    def __init__(
        self, db_path: str, inside: Callable[[sqlite3.Connection], None] | None = None
    ) -> None:
        self._inside = inside  # what the foreign transaction does before it waits
        self._locked = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(db_path,))

    def _hold(self, db_path: str) -> None:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._inside is not None:
                self._inside(conn)
            self._locked.set()
            self._release.wait(DEADLINE)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def __enter__(self) -> WriteLock:
        self._thread.start()
        assert self._locked.wait(DEADLINE), "the foreign connection never got the write lock"
        return self

    def release(self) -> None:
        """Commit the foreign transaction and wait for its thread."""
        self._release.set()
        self._thread.join()

    def __exit__(self, *exc: object) -> None:
        self.release()


async def blocked_on_the_lock(caplog: pytest.LogCaptureFixture) -> None:
    """Wait until the driver has found the lock taken (it logs each busy retry)."""
    await wait_until(
        lambda: any("busy for" in r.getMessage() for r in caplog.records),
        what="the driver to log that the database is busy",
    )


# a short wait per attempt and many attempts: the driver says it is waiting, and keeps waiting
WAIT_PER_ATTEMPT, ATTEMPTS = 0.05, 100_000


async def test_a_write_waits_for_a_held_lock(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cereal")
    async with SQLiteDriver(
        db_path, busy_timeout=WAIT_PER_ATTEMPT, busy_retries=ATTEMPTS
    ) as driver:
        with WriteLock(db_path) as lock:
            write = asyncio.create_task(driver.enqueue_workflow("wf", "i", None))
            await blocked_on_the_lock(caplog)
            assert not write.done()
            lock.release()
            await write  # waited, then went through
        assert (await driver.get_workflow_instance("wf", "i")).instance_name == "i"


async def test_a_lock_held_past_every_retry_is_a_clear_driver_error(db_path: str) -> None:
    async with SQLiteDriver(db_path, busy_timeout=0.1, busy_retries=1) as driver:
        with WriteLock(db_path):
            with pytest.raises(errors.DriverError, match=r"locked.*busy_timeout=0\.1s.*2 attempts"):
                await driver.enqueue_workflow("wf", "i", None)
            # readers are never blocked by a writer (WAL)
            with pytest.raises(errors.WorkflowInstanceNotFoundError):
                await driver.get_workflow_instance("wf", "i")
            # an idle dequeue only reads, so it does not wait for the lock either
            assert await driver.dequeue_tasks("t", 5) == []
        await driver.enqueue_workflow("wf", "i", None)  # the lock is free again


async def test_a_cancelled_dequeue_gives_its_tasks_back(
    db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cereal")
    async with SQLiteDriver(
        db_path, busy_timeout=WAIT_PER_ATTEMPT, busy_retries=ATTEMPTS
    ) as driver:
        await start_with_tasks(driver, 2)
        with WriteLock(db_path):
            waiting = asyncio.create_task(driver.dequeue_tasks("t", 2))
            await blocked_on_the_lock(caplog)  # the claim is running, waiting for the lock
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        # the claim commits once the lock is free, then its undo job runs
        claimed: list[tuple[TaskData, object]] = []

        async def given_back() -> bool:
            claimed[:] = await driver.dequeue_tasks("t", 2)
            return bool(claimed)

        await wait_until(given_back, what="the cancelled claim's tasks to be given back")
        assert [task.parameters for task, _ in claimed] == [b"0", b"1"]
        assert [task.metadata.attempt for task, _ in claimed] == [1, 1]


# ---- claims, leases and sweep -----------------------------------------------------------


async def test_kill_while_claimed_makes_the_decision_lose_its_claim(drv: SQLiteDriver) -> None:
    await drv.enqueue_workflow("wf", "i", None)
    _, completer = await drv.dequeue_workflow(["wf"])
    await drv.kill_workflow("wf", "i", "killed")
    with pytest.raises(errors.WorkflowClaimLostError):
        await completer.continue_(None, [NewTask("t")])
    await completer.close()
    assert (await drv.get_workflow_instance("wf", "i")).err == "killed"
    assert await drv.dequeue_tasks("t", 1) == []


async def test_sweep_releases_a_stale_claim_and_the_decision_then_fails(
    drv: SQLiteDriver,
) -> None:
    await drv.enqueue_workflow("wf", "i", None)
    first, stale = await drv.dequeue_workflow(["wf"], claim_expiry=0.01)
    # the claimer's 10 ms lapse; a sweeper with an hour-long expiry still releases it
    await sweep_until(drv, "released_claims", 1, task_expiry=3600)
    again, fresh = await drv.dequeue_workflow(["wf"])
    assert again == first
    with pytest.raises(errors.WorkflowClaimLostError):
        await stale.done(None)
    async with fresh:
        await fresh.done(b"1")
    await stale.close()


async def test_heartbeat_keeps_a_claim_from_the_sweep(drv: SQLiteDriver) -> None:
    # two claims of the same age; only "kept" heartbeats, right before each sweep
    await drv.enqueue_workflow("wf", "kept", None)
    await drv.enqueue_workflow("wf", "idle", None)
    _, kept = await drv.dequeue_workflow(["wf"], claim_expiry=1.0)
    _, idle = await drv.dequeue_workflow(["wf"], claim_expiry=1.0)
    released = 0

    async def idle_released() -> bool:
        nonlocal released
        await kept.heartbeat()
        released += (await sweep(drv, 3600)).released_claims
        return released > 0

    await wait_until(idle_released, what="the sweep to release the claim that never heartbeats")
    assert released == 1  # the idle one only
    async with kept:
        await kept.done(None)
    with pytest.raises(errors.WorkflowClaimLostError):
        await idle.done(None)
    await idle.close()


async def test_a_short_expiry_sweep_spares_a_claim_within_its_claimers_expiry(
    drv: SQLiteDriver,
) -> None:
    # Given a claim taken with an hour's expiry, older than the sweeper's 10 ms
    await drv.enqueue_workflow("wf", "i", None)
    _, completer = await drv.dequeue_workflow(["wf"], claim_expiry=3600)
    claimed_at = utcnow()
    await wait_past(claimed_at, 0.05)

    # When a sweeper whose own expiry is 10 ms sweeps
    report = await sweep(drv, 0.01)

    # Then the claim is still held: it is judged by its claimer's expiry
    assert report.released_claims == 0
    async with completer:
        await completer.done(b"1")
    assert (await drv.get_workflow_instance("wf", "i")).result == b"1"


async def test_sweep_expires_a_dead_lease_as_lost(drv: SQLiteDriver) -> None:
    await start_with_tasks(drv, 1)
    ((_, lease),) = await drv.dequeue_tasks("t", 1, task_expiry=0.01)
    # the holder's 10 ms lease lapses; a sweeper with an hour-long expiry still expires it
    await sweep_until(drv, "expired_tasks", 1, task_expiry=3600)
    with pytest.raises(errors.TaskLostError):
        await lease.succeed(None)
    event, completer = await drv.dequeue_workflow(["wf"])
    async with completer:
        assert event.task_result is not None
        assert event.task_result.status == "lost"
        assert event.completed_task_count == 1
        await completer.continue_(None, [])


async def test_sweep_trims_history_by_count_and_age(db_path: str) -> None:
    retention = HistoryRetention(max_rows=5, margin_rows=2)
    async with SQLiteDriver(db_path, retention=retention) as driver:
        for i in range(7):
            await driver.enqueue_workflow("wf", f"i{i}", None)
            _, completer = await driver.dequeue_workflow(["wf"])
            async with completer:
                await completer.done(None)
        assert (await sweep(driver, 60)).trimmed_results == 4
        kept = await driver.list_workflow_instances(ListWorkflowFilter())
        assert [inst.instance_name for inst in kept] == ["i4", "i5", "i6"]
        assert (await sweep(driver, 60)).trimmed_results == 0
        driver.retention = HistoryRetention(max_age=0.0)
        await sweep_until(driver, "trimmed_results", 3, task_expiry=60)


# ---- wakeups ------------------------------------------------------------------------------


def foreign_commit(db_path: str) -> None:
    """Commit from a plain connection: the watcher's data_version changes."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS test_marker (n INTEGER)")
        conn.execute("INSERT INTO test_marker VALUES (1)")
    finally:
        conn.close()


FOREIGN = {("workflow", None), ("task", None), ("schedule", None)}


async def test_own_commits_wake_by_name_and_never_as_foreign(
    drv: SQLiteDriver, db_path: str
) -> None:
    calls: list[tuple[str, str | None]] = []
    drv.add_wakeup_listener(lambda kind, name: calls.append((kind, name)))
    await start_with_tasks(drv, 2, task_name="tn")
    assert ("workflow", "wf") in calls
    assert ("task", "tn") in calls
    ours = len(calls)

    async def watcher_saw_a_foreign_commit() -> bool:
        if set(calls) >= FOREIGN:
            return True
        foreign_commit(db_path)  # again: the watcher may not have read a first data_version
        return False

    # the watcher has looked at data_version after our commits once it reports a foreign one
    await wait_until(watcher_saw_a_foreign_commit, what="the watcher to report a foreign commit")
    assert all(name is not None for _, name in calls[:ours]), calls


async def test_another_connection_commit_wakes_every_kind(db_path: str) -> None:
    async with SQLiteDriver(db_path) as watcher, SQLiteDriver(db_path) as other:
        calls: list[tuple[str, str | None]] = []

        def listener(kind: str, name: str | None) -> None:
            calls.append((kind, name))

        watcher.add_wakeup_listener(listener)
        commits = 0

        async def heard_every_kind() -> bool:
            # the watcher reports a change only once it has read a first data_version,
            # so commit again until it does
            nonlocal commits
            if set(calls) >= FOREIGN:
                return True
            commits += 1
            await other.create_workflow_schedule(
                "wf", f"s{commits}", None, True, "FREQ=DAILY", utcnow()
            )
            return False

        await wait_until(heard_every_kind, what="wakeups of every kind from the other driver")
        watcher.remove_wakeup_listener(listener)


async def test_due_schedule_claim_is_exclusive_until_released(drv: SQLiteDriver) -> None:
    await drv.create_workflow_schedule("wf", "s", b"1", True, "FREQ=DAILY", utcnow())
    schedule, completer = await drv.get_due_scheduled_workflow()
    with pytest.raises(errors.NoDueWorkflowsError):
        await drv.get_due_scheduled_workflow()
    await completer.close()
    again, completer = await drv.get_due_scheduled_workflow()
    assert again.id == schedule.id
    async with completer:
        later = utcnow() + timedelta(days=1)
        assert await completer.enqueue_and_update(next_due_at=later, enabled=True)
    assert (await drv.get_workflow_instance("wf", "s")).parameters == b"1"


async def test_a_schedule_stored_before_the_overlap_migration_skips_and_never_catches_up(
    db_path: str,
) -> None:
    # Given a file at the schema just before schedule_overlap, holding one schedule
    known = migrations()
    at = next(i for i, migration in enumerate(known) if migration.name == "schedule_overlap")
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, known[:at])
    conn.execute(
        "INSERT INTO cereal_workflow_schedules (workflow_name, instance_name, parameters,"
        " recurrence, enabled, next_due_at, created_at)"
        " VALUES ('wf', 'i', NULL, 'FREQ=DAILY', 1, 4102444800, 0)"
    )
    conn.close()

    # When it is migrated
    assert await SQLiteDriver(db_path).migrate() == [label(m) for m in known[at:]]

    # Then the schedule keeps the Go behaviour: skip while live, no catch-up, nothing waiting
    async with SQLiteDriver(db_path) as driver:
        got = await driver.get_workflow_schedule("wf", "i")
    assert (got.overlap, got.catch_up_window, got.run_pending) == ("skip", 0.0, False)
