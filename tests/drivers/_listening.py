"""Waiting until a PostgreSQL driver LISTENs (it listens only while it has wakeup listeners)."""

from __future__ import annotations

import psycopg

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._listen import decode_note, encode_note
from tests._waiting import DEADLINE, wait_until

ANY_WORK = [("workflow", None), ("task", None), ("schedule", None)]
"""What a driver reports each time its LISTEN becomes active."""


class Heard:
    """A wakeup listener that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, kind: str, name: str | None) -> None:
        self.calls.append((kind, name))


async def heard_eventually(heard: Heard, *wakes: tuple[str, str | None]) -> None:
    """Wait until ``heard`` got every one of ``wakes``."""
    await wait_until(lambda: all(w in heard.calls for w in wakes), what=f"wakeups {wakes}")


async def listen_with(driver: PostgresDriver, heard: Heard) -> None:
    """Add ``heard`` as a wakeup listener and wait until the driver LISTENs.

    The "any work" wakeups reported as LISTEN starts are then forgotten.
    """
    driver.add_wakeup_listener(heard)
    await wait_until(
        lambda: driver._listener is not None and driver._listener.listening, what="LISTEN"
    )
    await heard_eventually(heard, *ANY_WORK)
    heard.calls.clear()


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
