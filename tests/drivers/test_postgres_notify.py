"""PostgreSQL wakeups: NOTIFY reaches other drivers, at most once per transaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._listen import MAX_PAYLOAD_BYTES, decode_note, encode_note
from cereal.models import NewTask

WF = "wf"


class Heard:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, kind: str, name: str | None) -> None:
        self.calls.append((kind, name))


async def eventually(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def listening(postgres_dsn: str) -> AsyncIterator[psycopg.AsyncConnection[object]]:
    conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    await conn.execute("LISTEN cereal_wakeup")
    try:
        yield conn
    finally:
        await conn.close()


async def drain(conn: psycopg.AsyncConnection[object], wait: float = 0.5) -> list[str]:
    return [n.payload async for n in conn.notifies(timeout=wait)]


async def test_another_driver_is_woken(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        heard = Heard()
        other.add_wakeup_listener(heard)

        await sender.enqueue_workflow(WF, "i", None)
        await eventually(lambda: ("workflow", WF) in heard.calls)

        _, completer = await sender.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t"), NewTask("u")])
        await eventually(lambda: ("task", "t") in heard.calls and ("task", "u") in heard.calls)

        [(_, task)] = await sender.dequeue_tasks("t", 1)
        heard.calls.clear()
        await task.abandon()  # a stop hands LOST on to the others (plain completions stay local)
        await eventually(lambda: ("workflow", WF) in heard.calls)


async def test_a_driver_ignores_its_own_notifications(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        heard = Heard()
        driver.add_wakeup_listener(heard)
        await driver.enqueue_workflow(WF, "i", None)
        await asyncio.sleep(0.3)  # time for an echo to arrive, if there were one
        assert heard.calls == [("workflow", WF)]


async def test_one_notify_for_a_continue_with_100_tasks(
    postgres_dsn: str, listening: psycopg.AsyncConnection[object]
) -> None:
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        assert len(await drain(listening)) == 1

        _, completer = await driver.dequeue_workflow([WF])
        assert await drain(listening, 0.2) == []  # never on claim
        async with completer:
            await completer.continue_(None, [NewTask(f"task-{n % 7}") for n in range(100)])

        [payload] = await drain(listening)
        _, wakes = decode_note(payload)
        assert sorted(wakes) == sorted(("task", f"task-{n}") for n in range(7))

        claimed = await driver.dequeue_tasks("task-0", 50)
        assert await drain(listening, 0.2) == []  # never on claim
        await claimed[0][1].succeed(None)
        await claimed[1][1].fail("boom")
        assert await drain(listening, 0.3) == []  # never on completion
        await claimed[2][1].abandon()  # a stopping process hands its LOST task on at once
        assert len(await drain(listening)) == 1


async def test_delayed_tasks_are_not_announced(
    postgres_dsn: str, listening: psycopg.AsyncConnection[object]
) -> None:
    from cereal._time import utcnow

    later = utcnow().replace(year=utcnow().year + 1)
    async with PostgresDriver(postgres_dsn) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        await drain(listening)
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t", None, later)])
        assert await drain(listening, 0.3) == []


async def test_notify_off_sends_nothing(
    postgres_dsn: str, listening: psycopg.AsyncConnection[object]
) -> None:
    async with PostgresDriver(postgres_dsn, notify=False) as driver:
        await driver.enqueue_workflow(WF, "i", None)
        _, completer = await driver.dequeue_workflow([WF])
        async with completer:
            await completer.continue_(None, [NewTask("t")])
        assert await drain(listening, 0.3) == []


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
