"""The PostgreSQL driver's options for transaction poolers, against a direct server.

- ``prepare_threshold`` reaches every connection the driver opens;
- ``listen_url`` is where the LISTEN connection goes (and nothing else);
- the wakeup probe: received on a working LISTEN; when it does not come back,
  one WARNING (not one per probe), and an INFO once probes arrive again.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import psycopg
import pytest

from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._listen import NotificationListener, encode_probe
from tests._waiting import wait_until
from tests.drivers._listening import Heard, listen_with

WARNING_TEXT = "wakeups are not received"


def with_query(dsn: str, query: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


async def test_prepare_threshold_reaches_pooled_connections(postgres_dsn: str) -> None:
    never = PostgresDriver(with_query(postgres_dsn, "prepare_threshold=none"))
    async with never, never._connection("test") as conn:
        assert conn.prepare_threshold is None
    default = PostgresDriver(postgres_dsn)
    async with default, default._connection("test") as conn:
        assert conn.prepare_threshold == 5


async def test_listen_url_is_used_for_listen_only(postgres_dsn: str) -> None:
    listen = with_query(postgres_dsn, "application_name=cereal-listen")
    url = with_query(postgres_dsn, f"listen_url={quote(listen, safe='')}")
    async with PostgresDriver(url) as driver:
        await listen_with(driver, Heard())
        await driver.enqueue_workflow("wf", "i", None)
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT application_name, query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name LIKE 'cereal%%'"
            )
            sessions = await cursor.fetchall()
    listening = [name for name, query in sessions if query == "LISTEN cereal_wakeup"]
    assert listening == ["cereal-listen"]
    assert "cereal" in [name for name, _ in sessions]  # the pool: the main URL


async def test_a_direct_listen_receives_its_probe_without_warning(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    async with PostgresDriver(postgres_dsn) as driver:
        await listen_with(driver, Heard())
        listener = driver._listener
        assert listener is not None
        await wait_until(lambda: listener.probes_judged >= 1, what="the first probe")
        assert listener.wakeups_received is True
    assert WARNING_TEXT not in caplog.text


async def test_probes_that_do_not_arrive_warn_once_then_recovery_is_logged(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    delivering = False
    sender = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)

    async def probe(payload: str) -> None:
        # a stand-in for the pool: drops probes (as a pooler's LISTEN would miss them)
        # until told to deliver them
        if delivering:
            await sender.execute("SELECT pg_notify('cereal_wakeup', %s)", (payload,))

    listener = NotificationListener(
        postgres_dsn,
        {},
        "me",
        lambda kind, name: None,
        probe=probe,
        probe_interval=0.05,
        probe_timeout=1.0,
    )
    await listener.start()
    try:
        # Given three probes in a row that did not arrive
        await wait_until(lambda: listener.probes_judged >= 3, what="three probes")
        # Then one WARNING was logged, not three
        warnings = [r for r in caplog.records if WARNING_TEXT in r.getMessage()]
        assert [r.levelno for r in warnings] == [logging.WARNING]
        assert listener.wakeups_received is False

        # When probes arrive again, that is logged once at INFO
        delivering = True
        await wait_until(lambda: listener.wakeups_received is True, what="a probe to arrive")
        judged = listener.probes_judged
        await wait_until(lambda: listener.probes_judged >= judged + 2, what="two more probes")
        assert caplog.text.count("wakeups are received again") == 1
        assert len([r for r in caplog.records if WARNING_TEXT in r.getMessage()]) == 1
    finally:
        await listener.stop()
        await sender.close()


async def test_another_listener_ignores_a_probe(postgres_dsn: str) -> None:
    heard = Heard()
    async with PostgresDriver(postgres_dsn) as driver:
        await listen_with(driver, heard)
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
            await conn.execute(
                "SELECT pg_notify('cereal_wakeup', %s)", (encode_probe("someone-else", "1"),)
            )
            await driver.enqueue_workflow("wf", "after", None)  # our own wakeup, in process
            await conn.execute("SELECT pg_notify('cereal_wakeup', %s)", ("barrier\ntask\tbarrier",))
        await wait_until(lambda: ("task", "barrier") in heard.calls, what="the barrier note")
    assert heard.calls == [("workflow", "wf"), ("task", "barrier")]
