"""PostgreSQL migrations: from empty, idempotent, concurrent, tamper-evident."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from cereal import errors
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._migrate import _label, migrations
from tests.conformance._driver_helpers import sweep
from tests.drivers._postgres_schema import apply_migrations_by_hand

ALL = [f"{m.version:04d}_{m.name}" for m in migrations()]


def recorded(dsn: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM cereal_schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


async def test_migrate_from_empty_then_again_is_a_no_op(postgres_empty_dsn: str) -> None:
    driver = PostgresDriver(postgres_empty_dsn)

    assert await driver.migrate() == ALL
    assert await driver.migrate() == []

    assert recorded(postgres_empty_dsn) == [(m.version, m.name, m.checksum) for m in migrations()]
    async with driver:  # init migrates too: nothing left to do, and it works
        await driver.enqueue_workflow("wf", "i", None)


async def test_init_migrates_an_empty_database(postgres_empty_dsn: str) -> None:
    async with PostgresDriver(postgres_empty_dsn) as driver:
        await driver.enqueue_workflow("wf", "i", b"1")
        assert (await driver.get_workflow_instance("wf", "i")).parameters == b"1"
    assert len(recorded(postgres_empty_dsn)) == len(ALL)


def test_three_processes_migrate_at_once(postgres_empty_dsn: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from cereal.drivers.postgres import PostgresDriver\n"
        "print(','.join(asyncio.run(PostgresDriver(sys.argv[1]).migrate())))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_empty_dsn],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out.strip())

    # every migration was applied exactly once (the processes may have taken turns)
    applied = [name for out in outputs for name in out.split(",") if name]
    assert sorted(applied) == sorted(ALL)
    assert len(recorded(postgres_empty_dsn)) == len(ALL)


async def test_a_changed_migration_is_a_hard_error(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE cereal_schema_migrations SET checksum = 'edited' WHERE version = 1")

    with pytest.raises(errors.DriverError, match="changed after it was applied"):
        await PostgresDriver(postgres_dsn).migrate()
    driver = PostgresDriver(postgres_dsn)
    with pytest.raises(errors.DriverError, match="changed after it was applied"):
        await driver.init()
    assert not driver.is_open


async def test_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO cereal_schema_migrations (version, name, checksum)"
            " VALUES (9999, 'from_the_future', 'x')"
        )
    with pytest.raises(errors.DriverError, match="does not know"):
        await PostgresDriver(postgres_dsn).migrate()


async def test_unreachable_server_is_a_driver_error() -> None:
    driver = PostgresDriver("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(errors.DriverError):
        await driver.init()
    assert not driver.is_open


async def test_a_version_1_database_with_held_leases_migrates_to_lease_deadlines(
    postgres_empty_dsn: str,
) -> None:
    # Given a database at schema version 1 (as cereal before 0002 left it) where one
    # task lease was heartbeated just now, one 5 minutes ago, and one task is queued
    [initial, *_] = migrations()
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, [initial])
        [(instance_id,)] = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status,"
            " enqueued_tasks) VALUES ('wf', 'i', 'running', 3) RETURNING id"
        ).fetchall()
        conn.execute(
            "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
            " state, attempt, lease, heartbeat_at) VALUES"
            " (%(id)s, 'wf', 'i', 'held', 'running', 1, gen_random_uuid(), now()),"
            " (%(id)s, 'wf', 'i', 'stale', 'running', 1, gen_random_uuid(),"
            "  now() - interval '5 minutes'),"
            " (%(id)s, 'wf', 'i', 'queued', 'queued', 0, NULL, NULL)",
            {"id": instance_id},
        )

    # When it is migrated
    later = await PostgresDriver(postgres_empty_dsn).migrate()
    assert later == ALL[1:]
    assert later[:3] == [
        "0002_lease_deadline",
        "0003_instance_foreign_keys",
        "0004_instance_claims",
    ]

    # Then no lease got an expiry: held leases are judged by the sweeper's own, as before
    with psycopg.connect(postgres_empty_dsn) as conn:
        expiries = dict(conn.execute("SELECT task_name, lease_expiry FROM cereal_tasks").fetchall())
    assert expiries == {"held": None, "stale": None, "queued": None}
    async with PostgresDriver(postgres_empty_dsn) as driver:
        # and a sweeper with a 2-minute expiry expires only the lease silent for 5 minutes
        assert (await sweep(driver, 3600)).expired_tasks == 0
        assert (await sweep(driver, 120)).expired_tasks == 1
        event, completer = await driver.dequeue_workflow(["wf"])
        async with completer:
            assert event.task_result is not None
            assert (event.task_result.task_name, event.task_result.status) == ("stale", "lost")
            await completer.continue_(None, [])

        # and a lease whose old-code holder went silent 10 s ago is judged the same way
        with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE cereal_tasks SET heartbeat_at = now() - interval '10 seconds'"
                " WHERE task_name = 'held'"
            )
        assert (await sweep(driver, 3600)).expired_tasks == 0
        assert (await sweep(driver, 5)).expired_tasks == 1
        with psycopg.connect(postgres_empty_dsn) as conn:
            left = conn.execute("SELECT task_name, state FROM cereal_tasks").fetchall()
        assert left == [("queued", "queued")]


async def test_a_version_3_database_with_pending_events_migrates_to_instance_claims(
    postgres_empty_dsn: str,
) -> None:
    # Given a database at schema version 3 where one instance has two pending events
    # (one of them a task completion) and another has none
    older, [claims, *newer] = migrations()[:3], migrations()[3:]
    assert (claims.version, claims.name) == (4, "instance_claims")
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, older)
        [(waiting,)] = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status,"
            " enqueued_tasks) VALUES ('wf', 'waiting', 'running', 1) RETURNING id"
        ).fetchall()
        conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status)"
            " VALUES ('wf', 'idle', 'running')"
        )
        [(result_id,)] = conn.execute(
            "INSERT INTO cereal_task_results (instance_id, task_id, task_name, status,"
            " enqueued_at) VALUES (%s, 1, 't', 'success', now()) RETURNING id",
            (waiting,),
        ).fetchall()
        conn.execute(
            "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type,"
            " task_result_id, enqueued_at) VALUES"
            " (%(id)s, 'wf', 'task_complete', %(result)s, now() - interval '1 minute'),"
            " (%(id)s, 'wf', 'cancel', NULL, now())",
            {"id": waiting, "result": result_id},
        )

    # When it is migrated
    assert await PostgresDriver(postgres_empty_dsn).migrate() == [
        _label(migration) for migration in [claims, *newer]
    ]

    # Then the instance with events is claimable, with both events in order, and the
    # idle one is not
    async with PostgresDriver(postgres_empty_dsn) as driver:
        [(events, completer)] = await driver.claim_workflows(["wf"], max_instances=2, max_events=5)
        async with completer:
            assert events[0].instance.instance_name == "waiting"
            assert [event.type.value for event in events] == ["task_complete", "cancel"]
            assert [event.completed_task_count for event in events] == [1, 1]
            await completer.done(None)
        assert await driver.claim_workflows(["wf"], max_instances=2, max_events=5) == []


async def test_a_database_with_live_tasks_migrates_to_task_retries(
    postgres_empty_dsn: str,
) -> None:
    # Given a database at the schema just before task_retries, with one queued task and
    # one unconsumed result
    known = migrations()
    at = next(i for i, migration in enumerate(known) if migration.name == "task_retries")
    older = known[:at]
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, older)
        [(instance_id,)] = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status,"
            " enqueued_tasks, ready_at) VALUES ('wf', 'i', 'running', 2, now()) RETURNING id"
        ).fetchall()
        conn.execute(
            "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name)"
            " VALUES (%s, 'wf', 'i', 'queued')",
            (instance_id,),
        )
        [(result_id,)] = conn.execute(
            "INSERT INTO cereal_task_results (instance_id, task_id, task_name, status,"
            " enqueued_at) VALUES (%s, 99, 'done', 'success', now()) RETURNING id",
            (instance_id,),
        ).fetchall()
        conn.execute(
            "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type,"
            " task_result_id) VALUES (%s, 'wf', 'task_complete', %s)",
            (instance_id, result_id),
        )

    # When it is migrated
    assert await PostgresDriver(postgres_empty_dsn).migrate() == ALL[at:]

    # Then the old result counts one attempt, and the queued task runs as attempt 1 under
    # the claimer's policy (it had none), and can be queued again for a retry
    async with PostgresDriver(postgres_empty_dsn) as driver:
        [(events, workflow)] = await driver.claim_workflows(["wf"], max_events=5)
        async with workflow:
            [event] = events
            assert event.task_result is not None
            assert (event.task_result.task_name, event.task_result.attempts) == ("done", 1)
            await workflow.continue_(None, [])
        policy = '{"initial_backoff":0,"jitter":0,"max_attempts":2,"max_backoff":0,"multiplier":1}'
        [(data, completer)] = await driver.dequeue_tasks("queued", 1, retry_policy=policy)
        assert data.metadata.attempt == 1
        assert data.retry_policy is not None
        await completer.retry("boom", 0)
        [(again, _)] = await driver.dequeue_tasks("queued", 1)
        assert again.metadata.attempt == 2


async def test_a_schedule_stored_before_the_overlap_migration_skips_and_never_catches_up(
    postgres_empty_dsn: str,
) -> None:
    # Given a database at the schema just before schedule_overlap, holding one schedule
    known = migrations()
    at = next(i for i, migration in enumerate(known) if migration.name == "schedule_overlap")
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, known[:at])
        conn.execute(
            "INSERT INTO cereal_workflow_schedules (workflow_name, instance_name, recurrence,"
            " enabled, next_due_at) VALUES ('wf', 'i', 'FREQ=DAILY', true, '2099-01-01Z')"
        )

    # When it is migrated
    assert await PostgresDriver(postgres_empty_dsn).migrate() == [
        _label(migration) for migration in known[at:]
    ]

    # Then the schedule keeps the Go behaviour: skip while live, no catch-up, nothing waiting
    async with PostgresDriver(postgres_empty_dsn) as driver:
        got = await driver.get_workflow_schedule("wf", "i")
        with pytest.raises(errors.NoDueWorkflowsError):
            await driver.get_due_scheduled_workflow()
    assert (got.overlap, got.catch_up_window, got.run_pending) == ("skip", 0.0, False)


async def test_a_worker_of_the_previous_release_keeps_claiming_through_run_traces(
    postgres_empty_dsn: str,
) -> None:
    # Given a database just before run_traces, and a connection of a worker of that
    # release holding its claim statement prepared (psycopg prepares after 5 calls)
    known = migrations()
    at = next(i for i, migration in enumerate(known) if migration.name == "run_traces")
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        apply_migrations_by_hand(conn, known[:at])
    old_claim = "SELECT * FROM cereal_claim_instances(%s::text[], 1, 1, gen_random_uuid(), 60.0)"
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as old_worker:
        old_worker.execute(old_claim, (["wf"],), prepare=True)

        # When a process of this release migrates the store, and a run is enqueued
        assert await PostgresDriver(postgres_empty_dsn).migrate() == ALL[at:]
        async with PostgresDriver(postgres_empty_dsn) as driver:
            await driver.enqueue_workflow("wf", "i", None, traceparent=TRACEPARENT)

        # Then the old worker's prepared claim still runs and claims it (its function and
        # result type are unchanged: the trace contexts come from a function of their own)
        claimed = old_worker.execute(old_claim, (["wf"],), prepare=True).fetchall()
        assert [row[3] for row in claimed] == ["i"]


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
