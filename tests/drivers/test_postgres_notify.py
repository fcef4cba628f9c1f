"""PostgreSQL wakeups: NOTIFY reaches other drivers, at most once per transaction."""

from __future__ import annotations

import psycopg

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._listen import MAX_PAYLOAD_BYTES, decode_note, encode_note
from cereal.models import NewTask
from tests._waiting import wait_until
from tests.drivers._listening import (
    ANY_WORK,
    BARRIER_WAKE,
    Channel,
    Heard,
    heard_eventually,
    listen_with,
    send_barrier,
)

WF = "wf"


async def listening_sessions(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query = 'LISTEN cereal_wakeup'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_another_driver_is_woken(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        heard = Heard()
        await listen_with(other, heard)

        await sender.enqueue_workflow(WF, "i", None)
        await heard_eventually(heard, ("workflow", WF))

        _, completer = await sender.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t"), NewTask("u")])
        await heard_eventually(heard, ("task", "t"), ("task", "u"))

        [(_, task)] = await sender.dequeue_tasks("t", 1)
        heard.calls.clear()
        await task.abandon()  # a stop hands LOST on to the others (plain completions stay local)
        await heard_eventually(heard, ("workflow", WF))


async def test_a_driver_ignores_its_own_notifications(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        heard = Heard()
        await listen_with(driver, heard)
        await driver.enqueue_workflow(WF, "i", None)
        await send_barrier(postgres_dsn)  # an echo of the enqueue would arrive before it
        await heard_eventually(heard, BARRIER_WAKE)
        assert heard.calls == [("workflow", WF), BARRIER_WAKE]


async def test_one_notify_for_a_continue_with_100_tasks(
    postgres_dsn: str, listening: Channel
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        assert len(await listening.drain()) == 1

        _, completer = await driver.dequeue_workflow([WF])
        assert await listening.drain() == []  # never on claim
        async with completer:
            await completer.continue_(None, [NewTask(f"task-{n % 7}") for n in range(100)])

        [payload] = await listening.drain()
        _, wakes = decode_note(payload)
        assert sorted(wakes) == sorted(("task", f"task-{n}") for n in range(7))

        claimed = await driver.dequeue_tasks("task-0", 50)
        assert await listening.drain() == []  # never on claim
        await claimed[0][1].succeed(None)
        await claimed[1][1].fail("boom")
        assert await listening.drain() == []  # never on completion
        await claimed[2][1].abandon()  # a stopping process hands its LOST task on at once
        assert len(await listening.drain()) == 1


async def test_delayed_tasks_are_not_announced(postgres_dsn: str, listening: Channel) -> None:
    from cereal.checks.times import utcnow

    later = utcnow().replace(year=utcnow().year + 1)
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        await listening.drain()
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t", None, later)])
        assert await listening.drain() == []


async def test_notify_off_sends_nothing(postgres_dsn: str, listening: Channel) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t")])
        assert await listening.drain() == []


def test_payload_round_trips_and_collapses_when_too_long() -> None:
    wakes = [("task", "a\\b ✓"), ("workflow", None), ("task", "a\\b ✓")]
    sender, decoded = decode_note(encode_note("me", wakes))  # type: ignore[arg-type]
    assert (sender, decoded) == ("me", [("task", "a\\b ✓"), ("workflow", None)])

    many = [("task", "x" * 250 + str(n)) for n in range(100)]
    payload = encode_note("me", many)  # type: ignore[arg-type]
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    assert decode_note(payload) == ("me", [("task", None)])
    assert decode_note("me\ngarbage")[1] == [
        ("workflow", None),
        ("task", None),
        ("schedule", None),
    ]


async def test_a_driver_listens_only_while_it_has_wakeup_listeners(postgres_dsn: str) -> None:
    # every listening session pays a commit for each notification, so a driver that
    # only enqueues and reads (a web process) must not listen
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        assert await listening_sessions(postgres_dsn) == 0

        heard = Heard()
        await listen_with(driver, heard)
        assert await listening_sessions(postgres_dsn) == 1

        driver.remove_wakeup_listener(heard)
        await wait_until(lambda: not driver._listener.running, what="LISTEN to stop")  # type: ignore[union-attr]
        assert await listening_sessions(postgres_dsn) == 0


async def test_listening_again_reports_any_work_so_nothing_announced_meanwhile_is_missed(
    postgres_dsn: str,
) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        heard = Heard()
        await listen_with(other, heard)
        other.remove_wakeup_listener(heard)
        await wait_until(lambda: not other._listener.running, what="LISTEN to stop")  # type: ignore[union-attr]
        # Given work announced while nobody in `other` listened
        await sender.enqueue_workflow(WF, "missed", None)
        # When a listener comes back, it is told to look for any work at once
        other.add_wakeup_listener(heard)
        await heard_eventually(heard, *ANY_WORK)
