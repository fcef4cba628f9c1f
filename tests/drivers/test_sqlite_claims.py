"""SQLite's workflow claim: found from the instance table, at a cost the backlog cannot grow.

Migration 0003 keeps ``ready_seq`` (the id of an instance's oldest pending
event) on every instance and a partial index over the ready, unclaimed ones.
These tests check the claim reads that index instead of walking events, count
the SQLite VM steps of a claim with a large backlog claimed elsewhere
(deterministic, no timing), keep the marker equal to its definition through
every path that adds or consumes events, and migrate a version-2 file. The
last test holds for the memory driver too: events that landed while an
instance was claimed wake the runner once the claim ends.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Mapping
from datetime import timedelta

import pytest

from cereal.checks.times import utcnow
from cereal.drivers.memory import MemoryDriver
from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._migrate import apply_migrations, label, migrations
from cereal.drivers.sqlite._sql import Q
from cereal.models import NewTask, TaskStatus, WorkflowEventType
from tests._waiting import sweep_until
from tests.conformance._driver_helpers import sweep

BACKLOG = 50_000


def query_plan(conn: sqlite3.Connection, name: str, params: Mapping[str, object]) -> list[str]:
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + Q[name], params)]


def test_the_claim_reads_the_ready_index_and_never_scans(db_path: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    apply_migrations(conn, migrations())
    names = {"workflow_names": '["a", "b"]'}

    probe = query_plan(conn, "has_claimable_instance", names)
    claim = query_plan(
        conn, "claim_instances", {**names, "max_instances": 4, "now": 0.0, "expiry": 60.0}
    )
    events = query_plan(conn, "instance_events", {"instance_id": 1, "max_events": 8})
    conn.close()

    for plan in (probe, claim):
        assert any("USING INDEX cereal_workflow_instances_ready" in step for step in plan), plan
    for plan in (probe, claim, events):
        # the only scan is over the JSON array of workflow names
        scans = [step for step in plan if step.startswith("SCAN")]
        assert all("VIRTUAL TABLE" in step for step in scans), plan
    assert any("cereal_workflow_events_by_instance" in step for step in events), events


async def count_steps(driver: SQLiteDriver, body: Awaitable[None]) -> int:
    """SQLite VM instructions the driver's connection runs while awaiting ``body``."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0  # carry on

    await driver._connection().call(lambda conn: conn.set_progress_handler(tick, 1), mode="auto")
    try:
        await body
    finally:
        await driver._connection().call(
            lambda conn: conn.set_progress_handler(None, 1), mode="auto"
        )
    return steps


async def claim_and_continue(driver: SQLiteDriver, expected: str) -> None:
    [(events, completer)] = await driver.claim_workflows(["wf"], max_instances=4, max_events=8)
    assert [e.instance.instance_name for e in events] == [expected]
    await completer.continue_(None, [])


async def test_a_claim_does_not_visit_events_of_an_instance_claimed_elsewhere(
    drv: SQLiteDriver, db_path: str
) -> None:
    # Given an instance claimed elsewhere with one pending event, the cost of a
    # claim + decision of another instance
    await drv.enqueue_workflow("wf", "busy", None)
    [(_, held)] = await drv.claim_workflows(["wf"])
    await drv.cancel_workflow("wf", "busy")
    await drv.enqueue_workflow("wf", "free-1", None)
    small = await count_steps(drv, claim_and_continue(drv, "free-1"))

    # When 50 000 more events queue up on the claimed instance
    conn = sqlite3.connect(db_path, isolation_level=None)
    (busy_id,) = conn.execute(
        "SELECT id FROM cereal_workflow_instances WHERE instance_name = 'busy'"
    ).fetchone()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type, enqueued_at)"
        " VALUES (?, 'wf', 'cancel', ?)",
        [(busy_id, time.time())] * BACKLOG,
    )
    conn.execute("COMMIT")
    conn.close()
    await drv.enqueue_workflow("wf", "free-2", None)

    # Then claiming and deciding another instance costs the same number of VM steps
    # (walking the backlog would add several per event: hundreds of thousands)
    large = await count_steps(drv, claim_and_continue(drv, "free-2"))
    assert large <= small + 50, (small, large)
    assert large < 2_000

    # and the claimed instance still gets its events, in order, once released
    await held.close()
    [(events, completer)] = await drv.claim_workflows(["wf"], max_events=3)
    assert [e.type for e in events] == [WorkflowEventType.START] + [WorkflowEventType.CANCEL] * 2
    await completer.close()


def ready_markers(db_path: str) -> dict[str, tuple[int | None, int | None]]:
    """Per instance name: (ready_seq, the id of its oldest pending event)."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT instance_name, ready_seq,"
            " (SELECT min(e.id) FROM cereal_workflow_events AS e WHERE e.instance_id = i.id)"
            " FROM cereal_workflow_instances AS i"
        ).fetchall()
    conn.close()
    return {str(name): (ready, oldest) for name, ready, oldest in rows}


def assert_markers_true(db_path: str) -> None:
    for name, (ready, oldest) in ready_markers(db_path).items():
        assert ready == oldest, f"instance {name}: ready_seq {ready}, oldest event {oldest}"


async def test_the_ready_marker_follows_every_path_that_adds_or_consumes_events(
    drv: SQLiteDriver, db_path: str
) -> None:
    await drv.enqueue_workflow("wf", "a", None)  # enqueue
    assert_markers_true(db_path)
    [(_, completer)] = await drv.claim_workflows(["wf"])
    await completer.continue_(None, [NewTask("t"), NewTask("t"), NewTask("t")])
    assert ready_markers(db_path)["a"] == (None, None)

    tasks = await drv.dequeue_tasks("t", 3, task_expiry=0.001)
    await tasks[0][1].succeed(None)  # task completion
    await drv.cancel_workflow("wf", "a")  # cancel
    assert_markers_true(db_path)
    [(events, completer)] = await drv.claim_workflows(["wf"], max_events=1)
    await tasks[1][1].fail("x")  # lands while claimed
    await completer.continue_(None, [])  # consumes one, two left
    assert_markers_true(db_path)
    assert ready_markers(db_path)["a"][0] is not None

    [(events, completer)] = await drv.claim_workflows(["wf"], max_events=10)
    assert [e.type for e in events] == [WorkflowEventType.CANCEL, WorkflowEventType.TASK_COMPLETE]
    await completer.close()  # redelivered: still ready
    assert_markers_true(db_path)
    [(events, completer)] = await drv.claim_workflows(["wf"], max_events=10)
    await completer.continue_(None, [])
    assert ready_markers(db_path)["a"] == (None, None)

    await sweep_until(drv, "expired_tasks", 1, task_expiry=60)  # the third lease's 1 ms expiry
    assert_markers_true(db_path)
    [(events, completer)] = await drv.claim_workflows(["wf"], max_events=10)
    assert events[0].task_result is not None
    assert events[0].task_result.status == TaskStatus.LOST
    await completer.done(None)

    await drv.create_workflow_schedule("wf", "s", None, True, "FREQ=HOURLY", utcnow())
    _, scheduled = await drv.get_due_scheduled_workflow()
    assert await scheduled.enqueue_and_update(
        next_due_at=utcnow() + timedelta(hours=1), enabled=True
    )  # a schedule's enqueue
    assert_markers_true(db_path)
    assert ready_markers(db_path)["s"][0] is not None


async def test_a_version_2_file_gets_ready_markers_for_live_instances(db_path: str) -> None:
    # Given a file at schema version 2 with: an instance with two pending events, one
    # without events, and one claimed by a process that died 5 minutes ago
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert apply_migrations(conn, migrations()[:2]) == ["0001_initial", "0002_lease_deadline"]
    now = time.time()

    def instance(name: str, token: str | None = None) -> int:
        row_id = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status,"
            " started_at, claim_token, claim_heartbeat_at, claim_expiry)"
            " VALUES ('wf', ?, 'running', ?, ?, ?, 60)",
            (name, now, token, None if token is None else now - 300),
        ).lastrowid
        assert row_id is not None
        return row_id

    def event(instance_id: int, kind: str) -> None:
        conn.execute(
            "INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type,"
            " enqueued_at) VALUES (?, 'wf', ?, ?)",
            (instance_id, kind, now),
        )

    dead = instance("dead", token="gone")
    waiting = instance("waiting")
    instance("idle")
    event(dead, "cancel")
    event(waiting, "start")
    event(waiting, "cancel")
    conn.close()

    # When it is migrated
    later = await SQLiteDriver(db_path).migrate()
    assert later == [label(migration) for migration in migrations()[2:]]
    assert later[0] == "0003_ready_instances"

    # Then each live instance's marker is its oldest pending event, and claims see them
    markers = ready_markers(db_path)
    assert markers["idle"] == (None, None)
    assert markers["waiting"][0] is not None and markers["dead"][0] is not None
    assert_markers_true(db_path)
    async with SQLiteDriver(db_path) as driver:
        claimed = await driver.claim_workflows(["wf"], max_instances=10, max_events=10)
        assert [(e[0].instance.instance_name, len(e)) for e, _ in claimed] == [("waiting", 2)]
        assert (await sweep(driver, 60)).released_claims == 1  # the dead claimer's
        more = await driver.claim_workflows(["wf"], max_instances=10, max_events=10)
        assert [e[0].instance.instance_name for e, _ in more] == ["dead"]
        for _, completer in claimed + more:
            await completer.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("decision", ["continue", "close"])
async def test_events_that_landed_during_the_claim_wake_the_runner_once_it_ends(
    db_path: str, kind: str, decision: str
) -> None:
    # the wakeups those events sent found the instance claimed; without another the
    # events would wait for the next poll
    driver = MemoryDriver() if kind == "memory" else SQLiteDriver(db_path)
    async with driver:
        await driver.enqueue_workflow("wf", "i", None)
        [(_, completer)] = await driver.claim_workflows(["wf"])
        await driver.cancel_workflow("wf", "i")
        woken: list[tuple[str, str | None]] = []
        driver.add_wakeup_listener(lambda kind, name: woken.append((kind, name)))

        if decision == "continue":
            await completer.continue_(None, [])
        else:
            await completer.close()

        assert ("workflow", "wf") in woken
        woken.clear()
        [(events, completer)] = await driver.claim_workflows(["wf"], max_events=5)
        expected = [WorkflowEventType.CANCEL]
        if decision == "close":
            expected.insert(0, WorkflowEventType.START)
        assert [e.type for e in events] == expected
        await completer.continue_(None, [])
        assert woken == []  # nothing left: no wakeup
