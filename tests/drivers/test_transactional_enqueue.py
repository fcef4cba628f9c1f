"""Transactional enqueue (the outbox pattern) on real SQLite and PostgreSQL connections.

The caller's own connection writes an order row and enqueues a workflow in
one transaction: after a rollback neither exists; after a commit both do,
and an idle running worker is woken by the commit alone (its poll interval
is far longer than any wait here). "Not before the commit" is checked
deterministically: while the transaction is open the instance is invisible to
other connections and, on PostgreSQL, a probe instance enqueued after it is
run to its end, so the worker has taken everything it could see.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from cereal import Decision, Manager, WorkflowInstance, errors
from cereal.drivers import Driver
from cereal.drivers.memory import MemoryDriver
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.sqlite import SQLiteDriver
from cereal.models import ListWorkflowFilter
from tests.plugins.manager import FAST_OPTIONS, wait_finished

WF, INST, PROBE = "order-fulfilment", "order-1", "probe"
WAIT = 30.0  # generous: the machine may be loaded
NEVER_POLL = {"workflow_poll_interval": 3600.0, "task_poll_interval": 3600.0}


class Caller:
    """The application's own connection and transaction (SQLite or psycopg, async or sync)."""

    def __init__(self, connection: Any, placeholder: str) -> None:
        self.connection = connection
        self._insert = f"INSERT INTO orders (id) VALUES ({placeholder})"

    async def _run(self, fn: Callable[[], Any]) -> Any:
        result = fn()
        return await result if asyncio.iscoroutine(result) else result

    async def insert_order(self, order_id: int) -> None:
        await self._run(lambda: self.connection.execute(self._insert, (order_id,)))

    async def commit(self) -> None:
        await self._run(self.connection.commit)

    async def rollback(self) -> None:
        await self._run(self.connection.rollback)

    async def close(self) -> None:
        await self._run(self.connection.close)


class Store:
    """A store of one kind: the driver, and callers' connections to the same database."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._callers: list[Caller] = []
        if kind == "sqlite":
            self.path = str(tmp_path / "cereal.db")
            self.driver: Driver = SQLiteDriver(self.path)
        else:
            self.dsn: str = request.getfixturevalue("postgres_dsn")
            self.driver = PostgresDriver(self.dsn)

    async def create_orders_table(self) -> None:
        ddl = "CREATE TABLE orders (id INTEGER PRIMARY KEY)"
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as conn:
                conn.execute(ddl)
            conn.close()
        else:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as pg:
                await pg.execute(ddl)

    async def orders_seen_elsewhere(self) -> list[int]:
        return await self._read_elsewhere("SELECT id FROM orders ORDER BY id")

    async def instances_seen_elsewhere(self) -> list[str]:
        """Live instances as a fresh connection sees them (not the driver's: on SQLite its
        thread may be waiting for the write lock the caller's transaction holds)."""
        return await self._read_elsewhere("SELECT instance_name FROM cereal_workflow_instances")

    async def _read_elsewhere(self, query: str) -> list[Any]:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                return [row[0] for row in conn.execute(query)]
            finally:
                conn.close()
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as pg:
            return [row[0] for row in await (await pg.execute(query)).fetchall()]

    async def caller(self) -> Caller:
        if self.kind == "sqlite":
            made = Caller(sqlite3.connect(self.path), "?")  # legacy mode: DML opens a transaction
        elif self.kind == "postgres-async":
            made = Caller(await psycopg.AsyncConnection.connect(self.dsn), "%s")
        else:
            made = Caller(psycopg.connect(self.dsn), "%s")
        self._callers.append(made)
        return made

    async def close(self) -> None:
        for made in self._callers:
            await made.close()


@pytest.fixture(params=["sqlite", "postgres-async", "postgres-sync"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    built = Store(request.param, tmp_path, request)
    await built.driver.init()
    await built.create_orders_table()
    try:
        yield built
    finally:
        await built.close()
        while built.driver.is_open:
            await built.driver.close()


class Recorder:
    """A workflow that completes at once, noting whether the commit had been issued."""

    def __init__(self) -> None:
        self.committing = False
        self.started: dict[str, bool] = {}
        self.start_seen = asyncio.Event()

    async def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
        self.started[w.instance_name] = self.committing
        if w.instance_name == INST:
            self.start_seen.set()
        return w.complete(w.get_parameters())

    async def on_task_complete(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("no tasks here")

    async def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
        return w.fail("cancelled")


@pytest.fixture
async def managers() -> AsyncIterator[Callable[..., Manager]]:
    built: list[Manager] = []

    def make(driver: Driver, **options: Any) -> Manager:
        manager = Manager(driver, **{**FAST_OPTIONS, **options})
        built.append(manager)
        return manager

    yield make
    for manager in built:
        await manager.stop(grace_period=0.5)


async def _invisible(manager: Manager, instance: str = INST) -> bool:
    try:
        await manager.get_workflow_instance(WF, instance)
    except errors.WorkflowInstanceNotFoundError:
        return True
    return False


# ---- commit and rollback ------------------------------------------------------------------


async def test_a_rollback_leaves_neither_the_order_nor_the_instance(
    store: Store, managers: Callable[..., Manager]
) -> None:
    manager = managers(store.driver)
    caller = await store.caller()

    # Given an order row and its workflow written in one open transaction
    await caller.insert_order(1)
    await manager.enqueue_workflow(WF, INST, {"order": 1}, connection=caller.connection)
    assert await store.instances_seen_elsewhere() == []  # other connections see nothing

    # When the caller rolls back
    await caller.rollback()

    # Then neither exists, and the names are free
    assert await _invisible(manager)
    assert await manager.list_workflow_instances() == []
    assert await store.orders_seen_elsewhere() == []
    await manager.enqueue_workflow(WF, INST, {"order": 1})


async def test_a_commit_wakes_an_idle_running_worker_and_only_then(
    store: Store, managers: Callable[..., Manager]
) -> None:
    # Given a running worker that only a wakeup can reach (it polls once an hour)
    flow = Recorder()
    manager = managers(store.driver, **NEVER_POLL)
    manager.register_workflow_executor(WF, flow)
    await manager.start()
    caller = await store.caller()

    # When an order and its workflow are written in one transaction, not yet committed
    await caller.insert_order(7)
    await manager.enqueue_workflow(WF, INST, {"order": 7}, connection=caller.connection)

    # Then no one else sees the instance, and the worker has not run it
    assert await store.instances_seen_elsewhere() == []
    if store.kind != "sqlite":
        # even after running everything it could see: a probe enqueued later, run to its
        # end (on SQLite the open transaction holds the one write lock, so no worker can
        # claim anything before the commit, and a probe could not be enqueued either)
        await manager.enqueue_workflow(WF, PROBE)
        await wait_finished(manager, WF, PROBE, timeout=WAIT)
    assert INST not in flow.started

    # When the caller commits
    flow.committing = True
    await caller.commit()

    # Then the commit wakes the worker, which runs the instance with the order beside it
    await asyncio.wait_for(flow.start_seen.wait(), timeout=WAIT)
    assert flow.started[INST] is True
    done = await wait_finished(manager, WF, INST, timeout=WAIT)
    assert done.get_result() == {"order": 7}
    assert await store.orders_seen_elsewhere() == [7]


async def test_a_live_instance_raises_exists_and_the_callers_transaction_goes_on(
    store: Store, managers: Callable[..., Manager]
) -> None:
    manager = managers(store.driver)
    await manager.enqueue_workflow(WF, INST, "first")
    caller = await store.caller()
    await caller.insert_order(1)

    with pytest.raises(errors.WorkflowInstanceExistsError):
        await manager.enqueue_workflow(WF, INST, "second", connection=caller.connection)

    # the failed enqueue left the caller's transaction usable
    await caller.insert_order(2)
    await caller.commit()
    assert await store.orders_seen_elsewhere() == [1, 2]
    assert (await manager.get_workflow_instance(WF, INST)).get_parameters() == "first"


async def test_bad_input_is_refused_before_touching_the_transaction(
    store: Store, managers: Callable[..., Manager]
) -> None:
    manager = managers(store.driver, max_value_bytes=64)
    caller = await store.caller()
    conn = caller.connection

    with pytest.raises(ValueError, match="workflow name"):
        await manager.enqueue_workflow("", INST, connection=conn)
    with pytest.raises(ValueError, match="instance name"):
        await manager.enqueue_workflow(WF, "bad\nname", connection=conn)
    with pytest.raises(TypeError):
        await manager.enqueue_workflow(WF, INST, {"not json": object()}, connection=conn)
    with pytest.raises(ValueError, match="64"):
        await manager.enqueue_workflow(WF, INST, "x" * 100, connection=conn)

    await caller.insert_order(1)
    await caller.commit()
    assert await manager.list_workflow_instances() == []
    assert await store.orders_seen_elsewhere() == [1]


# ---- connection types and states ------------------------------------------------------------


async def test_the_memory_driver_refuses_a_connection(tmp_path: Path) -> None:
    manager = Manager(MemoryDriver())
    conn = sqlite3.connect(str(tmp_path / "any.db"))
    try:
        with pytest.raises(TypeError, match="MemoryDriver cannot enqueue on a caller's connection"):
            await manager.enqueue_workflow(WF, INST, connection=conn)
        assert await manager.list_workflow_instances() == []
    finally:
        conn.close()
        await manager.stop()


async def test_the_sqlite_driver_takes_only_a_sqlite3_connection_to_its_file(
    tmp_path: Path, managers: Callable[..., Manager]
) -> None:
    path = tmp_path / "cereal.db"
    manager = managers(SQLiteDriver(str(path)))
    await manager.list_workflow_instances()  # opens the driver: the file now exists

    for wrong in ("sqlite:///cereal.db", object()):
        with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
            await manager.enqueue_workflow(WF, INST, connection=wrong)

    other = sqlite3.connect(str(tmp_path / "other.db"))
    in_memory = sqlite3.connect(":memory:")
    try:
        with pytest.raises(ValueError, match=r"other\.db"):
            await manager.enqueue_workflow(WF, INST, connection=other)
        with pytest.raises(ValueError, match="in-memory"):
            await manager.enqueue_workflow(WF, INST, connection=in_memory)
    finally:
        other.close()
        in_memory.close()
    assert await manager.list_workflow_instances() == []


async def test_a_sqlite_connection_in_autocommit_mode_needs_an_explicit_begin(
    tmp_path: Path, managers: Callable[..., Manager]
) -> None:
    path = tmp_path / "cereal.db"
    manager = managers(SQLiteDriver(str(path)))
    await manager.list_workflow_instances()
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        with pytest.raises(ValueError, match="autocommit"):
            await manager.enqueue_workflow(WF, INST, connection=conn)
        assert not conn.in_transaction

        conn.execute("BEGIN")
        await manager.enqueue_workflow(WF, INST, connection=conn)
        assert conn.in_transaction  # never committed by cereal
        assert await _invisible(manager)
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert not await _invisible(manager)


async def test_the_postgres_driver_takes_only_a_psycopg_connection(
    postgres_dsn: str, tmp_path: Path, managers: Callable[..., Manager]
) -> None:
    manager = managers(PostgresDriver(postgres_dsn))
    sqlite_conn = sqlite3.connect(str(tmp_path / "x.db"))
    try:
        for wrong in (sqlite_conn, postgres_dsn):
            with pytest.raises(TypeError, match="psycopg AsyncConnection or Connection"):
                await manager.enqueue_workflow(WF, INST, connection=wrong)
    finally:
        sqlite_conn.close()
    assert await manager.list_workflow_instances() == []


async def test_a_psycopg_autocommit_connection_needs_a_transaction_block(
    postgres_dsn: str, managers: Callable[..., Manager]
) -> None:
    manager = managers(PostgresDriver(postgres_dsn))
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            await manager.enqueue_workflow(WF, INST, connection=conn)

        async with conn.transaction():
            await manager.enqueue_workflow(WF, INST, connection=conn)
            assert await _invisible(manager)
    assert not await _invisible(manager)


async def test_a_failed_psycopg_transaction_is_refused(
    postgres_dsn: str, managers: Callable[..., Manager]
) -> None:
    manager = managers(PostgresDriver(postgres_dsn))
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            await conn.execute("SELECT 1 / 0")
        with pytest.raises(ValueError, match="roll it back"):
            await manager.enqueue_workflow(WF, INST, connection=conn)
        await conn.rollback()
    assert await manager.list_workflow_instances() == []


async def _connect(dsn: str, flavour: str) -> Any:
    """The caller's psycopg connection, async or plain, with an orders table in its database."""
    ddl = "CREATE TABLE IF NOT EXISTS orders (id integer PRIMARY KEY)"
    if flavour == "async":
        conn: Any = await psycopg.AsyncConnection.connect(dsn)
        await conn.execute(ddl)
    else:
        conn = psycopg.connect(dsn)
        conn.execute(ddl)
    return conn


async def _rows(dsn: str, query: str) -> list[Any]:
    async with await psycopg.AsyncConnection.connect(dsn) as check:
        return [row[0] for row in await (await check.execute(query)).fetchall()]


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` (a URL) whose sessions search ``schema`` only."""
    options = quote(f"-csearch_path={schema}", safe="")
    return f"{dsn}{'&' if '?' in dsn else '?'}options={options}"


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_connection_to_another_cereal_database_is_refused_and_nothing_stored(
    postgres_dsn: str, postgres_empty_dsn: str, managers: Callable[..., Manager], flavour: str
) -> None:
    # Given another database of the same server, with cereal's tables too
    await PostgresDriver(postgres_empty_dsn).migrate()
    manager = managers(PostgresDriver(postgres_dsn))
    caller = Caller(await _connect(postgres_empty_dsn, flavour), "%s")
    try:
        await caller.insert_order(1)

        # When the caller enqueues on its connection to that database
        with pytest.raises(ValueError, match="not the driver's store") as refused:
            await manager.enqueue_workflow(WF, INST, connection=caller.connection)

        # Then the message names both databases, and the transaction goes on
        other_db, ours = postgres_empty_dsn.rsplit("/", 1)[1], postgres_dsn.rsplit("/", 1)[1]
        assert other_db in str(refused.value) and ours in str(refused.value)
        await caller.insert_order(2)
        await caller.commit()
    finally:
        await caller.close()
    assert await _rows(postgres_empty_dsn, "SELECT id FROM orders ORDER BY id") == [1, 2]
    assert (
        await _rows(postgres_empty_dsn, "SELECT instance_name FROM cereal_workflow_instances") == []
    )
    assert await manager.list_workflow_instances() == []


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_connection_to_a_database_without_cereal_tables_is_refused(
    postgres_dsn: str, postgres_empty_dsn: str, managers: Callable[..., Manager], flavour: str
) -> None:
    manager = managers(PostgresDriver(postgres_dsn))
    caller = Caller(await _connect(postgres_empty_dsn, flavour), "%s")
    try:
        await caller.insert_order(1)

        with pytest.raises(ValueError, match="no cereal tables"):
            await manager.enqueue_workflow(WF, INST, connection=caller.connection)

        await caller.insert_order(2)
        await caller.commit()
    finally:
        await caller.close()
    assert await _rows(postgres_empty_dsn, "SELECT id FROM orders ORDER BY id") == [1, 2]
    assert await manager.list_workflow_instances() == []


async def test_a_connection_searching_another_schema_is_refused_and_the_drivers_is_taken(
    postgres_dsn: str, managers: Callable[..., Manager]
) -> None:
    # Given a second cereal store in schema "other" of the same database
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        await admin.execute("CREATE SCHEMA other")
    in_other = with_search_path(postgres_dsn, "other")
    await PostgresDriver(in_other).migrate()
    public = managers(PostgresDriver(postgres_dsn))
    other = managers(PostgresDriver(in_other))

    async with await psycopg.AsyncConnection.connect(in_other) as conn:
        # the public store's Manager refuses a connection that finds schema "other"
        with pytest.raises(ValueError, match="schema 'other'"):
            await public.enqueue_workflow(WF, INST, connection=conn)
        # the Manager of schema "other" takes it
        await other.enqueue_workflow(WF, INST, connection=conn)
        await conn.commit()
    assert await public.list_workflow_instances() == []
    assert [i.instance_name for i in await other.list_workflow_instances()] == [INST]


async def test_a_connection_through_pgbouncer_reaches_the_same_store(
    postgres_dsn: str, pgbouncer_dsn: str, managers: Callable[..., Manager]
) -> None:
    # the driver goes through PgBouncer; the caller straight to PostgreSQL, and back
    bounced = f"{pgbouncer_dsn}?prepare_threshold=none&listen_url={quote(postgres_dsn, safe='')}"
    through = managers(PostgresDriver(bounced))
    direct = managers(PostgresDriver(postgres_dsn))

    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        await through.enqueue_workflow(WF, "direct-caller", connection=conn)
        await conn.commit()
    async with await psycopg.AsyncConnection.connect(pgbouncer_dsn, prepare_threshold=None) as conn:
        await direct.enqueue_workflow(WF, "bounced-caller", connection=conn)
        await conn.commit()
    names = sorted(i.instance_name for i in await direct.list_workflow_instances())
    assert names == ["bounced-caller", "direct-caller"]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_failing_postgres_enqueue_leaves_the_callers_transaction_usable(
    postgres_dsn: str, managers: Callable[..., Manager], flavour: str
) -> None:
    # Given a store whose instance insert fails for one name (a trigger raises)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        await admin.execute(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.instance_name = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;"
            " RETURN NEW; END $$"
        )
        await admin.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON cereal_workflow_instances"
            " FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
        )
    manager = managers(PostgresDriver(postgres_dsn))
    caller = Caller(await _connect(postgres_dsn, flavour), "%s")
    try:
        await caller.insert_order(1)

        # When the enqueue statement fails on the caller's connection
        with pytest.raises(errors.DriverError, match="boom refused"):
            await manager.enqueue_workflow(WF, "boom", connection=caller.connection)

        # Then the caller's transaction goes on and commits its own rows
        await caller.insert_order(2)
        await manager.enqueue_workflow(WF, INST, connection=caller.connection)
        await caller.commit()
    finally:
        await caller.close()
    assert await _rows(postgres_dsn, "SELECT id FROM orders ORDER BY id") == [1, 2]
    assert [i.instance_name for i in await manager.list_workflow_instances()] == [INST]


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_an_enqueue_in_psycopg_pipeline_mode_is_checked_and_stored(
    postgres_dsn: str, postgres_empty_dsn: str, managers: Callable[..., Manager], flavour: str
) -> None:
    manager = managers(PostgresDriver(postgres_dsn))

    async def enqueue_in_pipeline(dsn: str, instance: str) -> None:
        if flavour == "async":
            conn = await psycopg.AsyncConnection.connect(dsn)
            async with conn, conn.pipeline():
                await manager.enqueue_workflow(WF, instance, connection=conn)
        else:
            with psycopg.connect(dsn) as sync_conn, sync_conn.pipeline():
                await manager.enqueue_workflow(WF, instance, connection=sync_conn)

    await enqueue_in_pipeline(postgres_dsn, INST)  # committed when the connection closes
    with pytest.raises(ValueError, match="not the driver's store"):
        await enqueue_in_pipeline(postgres_empty_dsn, "elsewhere")
    assert [i.instance_name for i in await manager.list_workflow_instances()] == [INST]


def as_user(dsn: str, user: str) -> str:
    """``dsn`` (a URL) connecting as ``user``."""
    return f"{dsn}{'&' if '?' in dsn else '?'}user={user}"


async def test_a_role_that_may_not_read_the_cluster_identifier_is_checked_on_oids(
    postgres_dsn: str,
    postgres_empty_dsn: str,
    postgres_admin_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a role that may use cereal's tables but not call pg_control_system()
    role = f"cereal_limited_{uuid.uuid4().hex[:12]}"
    await PostgresDriver(postgres_empty_dsn).migrate()
    async with await psycopg.AsyncConnection.connect(postgres_admin_dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
            await db.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
            for grant in (
                "GRANT ALL ON SCHEMA public TO {}",
                "GRANT ALL ON ALL TABLES IN SCHEMA public TO {}",
                "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}",
                "GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO {}",
            ):
                await db.execute(sql.SQL(grant).format(sql.Identifier(role)))
        caplog.set_level(logging.WARNING, logger="cereal")

        async with PostgresDriver(as_user(postgres_dsn, role)) as driver:
            # When it enqueues on connections to its own database and to another one
            async with await psycopg.AsyncConnection.connect(as_user(postgres_dsn, role)) as conn:
                await driver.enqueue_workflow_in_transaction(conn, WF, INST, None)
                await conn.commit()
            async with await psycopg.AsyncConnection.connect(
                as_user(postgres_empty_dsn, role)
            ) as conn:
                with pytest.raises(ValueError, match="not the driver's store"):
                    await driver.enqueue_workflow_in_transaction(conn, WF, "elsewhere", None)

            # Then the first is stored, the second refused, and a WARNING says why
            listed = await driver.list_workflow_instances(ListWorkflowFilter())
            assert [i.instance_name for i in listed] == [INST]
        assert "system identifier" in caplog.text
    finally:
        async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
            await db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        async with await psycopg.AsyncConnection.connect(
            postgres_admin_dsn, autocommit=True
        ) as admin:
            await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
