"""PostgreSQL wakeups: NOTIFY reaches other drivers, at most once per transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._listen import MAX_PAYLOAD_BYTES, decode_note, encode_note
from cereal.models import NewTask
from tests._waiting import DEADLINE, wait_until

WF = "wf"


class Heard:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, kind: str, name: str | None) -> None:
        self.calls.append((kind, name))


# A note from a foreign sender, sent after the action under test has committed. PostgreSQL
# delivers notifications in commit order, so whatever the action announced arrives before
# it: "nothing was announced" is checked without waiting for a quiet period.
BARRIER_WAKE = ("task", "barrier")
BARRIER = encode_note("test-barrier", [BARRIER_WAKE])  # type: ignore[list-item]


async def send_barrier(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify('cereal_wakeup', %s)", (BARRIER,))


class Channel:
    """A connection listening on the wakeup channel."""

    def __init__(self, conn: psycopg.AsyncConnection[object], dsn: str) -> None:
        self.conn = conn
        self.dsn = dsn

    async def drain(self) -> list[str]:
        """Every payload committed before now (up to a barrier note sent now).

        Wakeup probes (a driver checking that its LISTEN hears anything) are left out.
        """
        await send_barrier(self.dsn)
        got: list[str] = []
        async for note in self.conn.notifies(timeout=DEADLINE):
            if note.payload == BARRIER:
                return got
            if decode_note(note.payload)[1]:
                got.append(note.payload)
        raise AssertionError(f"the barrier notification did not arrive within {DEADLINE:g} s")


@pytest.fixture
async def listening(postgres_dsn: str) -> AsyncIterator[Channel]:
    conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    await conn.execute("LISTEN cereal_wakeup")
    try:
        yield Channel(conn, postgres_dsn)
    finally:
        await conn.close()


async def heard_eventually(heard: Heard, *wakes: tuple[str, str | None]) -> None:
    await wait_until(lambda: all(w in heard.calls for w in wakes), what=f"wakeups {wakes}")


async def test_another_driver_is_woken(postgres_dsn: str) -> None:
    async with PostgresDriver(postgres_dsn) as sender, PostgresDriver(postgres_dsn) as other:
        heard = Heard()
        other.add_wakeup_listener(heard)

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
        driver.add_wakeup_listener(heard)
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
