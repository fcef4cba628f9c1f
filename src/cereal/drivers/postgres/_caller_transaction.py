"""Enqueue on the caller's own psycopg connection, inside its open transaction.

The outbox pattern: an application writes its own rows and the workflow
instance in one transaction, so both exist or neither does. The enqueue is
the driver's usual single statement (instance, start event, ``pg_notify``),
run inside a savepoint so that a failure leaves the caller's transaction
usable. The connection must reach the driver's own store: the savepoint
travels with a query of the session's :class:`StoreIdentity` (one round trip
for both), and a connection to another server, database or schema is refused
before anything is written. ``NOTIFY`` is transactional: it is delivered when, and only if, the
caller commits, so workers wake after the commit. Its sender token is not
any driver's own, so the LISTEN connection of this very driver wakes its
Managers too (the enqueue cannot wake them directly: it does not know when
the commit happens). Nothing here commits or rolls back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from cereal import errors
from cereal.drivers.postgres._db import QUERIES, Row, translate

CALLER_SENDER = "caller-transaction"
"""The sender token of notes sent by a caller's commit (no driver uses it)."""

_SAVEPOINT = "SAVEPOINT cereal_enqueue"
_RELEASE = "RELEASE SAVEPOINT cereal_enqueue"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT cereal_enqueue"
# two statements in one simple-protocol round trip; the savepoint comes first,
# so that a failing identity query can be rolled back too
_SAVEPOINT_AND_IDENTITY = _SAVEPOINT + "; " + QUERIES["store_identity"]

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]


@dataclass(frozen=True)
class StoreIdentity:
    """Which cereal store a session reaches (a row of the ``store_identity`` query).

    Two sessions reach the same store when they agree on the cluster's system
    identifier, the database's oid and the instance table their search paths
    find. All three are read from the server, so a proxy (PgBouncer) or a
    different host name or socket for the same server does not matter.
    """

    system_identifier: int
    database_oid: int
    table_oid: int | None
    """``cereal_workflow_instances`` as the search path finds it; None: not found."""
    database_name: str
    schema_name: str | None

    @classmethod
    def from_row(cls, row: Row | None) -> StoreIdentity:
        """The identity in a row of the ``store_identity`` query."""
        if row is None:
            raise errors.DriverError("PostgreSQL: the store identity query returned no row")
        return cls(
            system_identifier=int(row["system_identifier"]),
            database_oid=int(row["database_oid"]),
            table_oid=None if row["table_oid"] is None else int(row["table_oid"]),
            database_name=str(row["database_name"]),
            schema_name=row["schema_name"],
        )

    def same_store(self, other: StoreIdentity) -> bool:
        """True when both reach the same cereal tables of the same database and server."""
        return (
            self.table_oid is not None
            and self.system_identifier == other.system_identifier
            and self.database_oid == other.database_oid
            and self.table_oid == other.table_oid
        )

    def describe(self) -> str:
        """Where this session's cereal tables are, for a message."""
        where = f"database {self.database_name!r}"
        if self.table_oid is None:
            return f"{where} (no cereal tables on its search path)"
        return f"{where}, schema {self.schema_name!r}"


def _refuse_other_store(here: StoreIdentity, expected: StoreIdentity) -> None:
    """Raise unless ``here`` is the driver's store ``expected``.

    Raises:
        ValueError: the caller's connection reaches another store.
    """
    if here.same_store(expected):
        return
    server = (
        ""
        if here.system_identifier == expected.system_identifier
        else " on another PostgreSQL server"
    )
    raise ValueError(
        f"the psycopg connection reaches {here.describe()}{server}, not the driver's store "
        f"({expected.describe()}); nothing was written: enqueue on a connection to the "
        "driver's database (and schema)"
    )


def check_connection(connection: object) -> AnyConnection:
    """The caller's connection, once it is known to be a usable psycopg connection.

    Raises:
        TypeError: not a psycopg ``AsyncConnection`` or ``Connection``.
        ValueError: closed, in autocommit mode with no transaction open, or
            in a failed transaction.
    """
    if not isinstance(connection, psycopg.AsyncConnection | psycopg.Connection):
        raise TypeError(
            "the PostgreSQL driver enqueues on a psycopg AsyncConnection or Connection, "
            f"got {type(connection).__module__}.{type(connection).__qualname__}"
        )
    if connection.closed:
        raise ValueError("the psycopg connection is closed")
    status = connection.info.transaction_status
    if status == TransactionStatus.INERROR:
        raise ValueError(
            "the psycopg connection's transaction has failed: roll it back before enqueueing"
        )
    if connection.autocommit and status == TransactionStatus.IDLE:
        raise ValueError(
            "the psycopg connection is in autocommit mode with no open transaction: "
            "enqueue inside `conn.transaction()`, so that the instance commits with "
            "your own writes"
        )
    return connection


async def enqueue(connection: AnyConnection, params: dict[str, Any], store: StoreIdentity) -> bool:
    """Run the enqueue statement on ``connection``; False when the names are live.

    ``store`` is the driver's own store: a connection that reaches another one
    is refused. A plain ``Connection`` runs in a worker thread, off the event loop.

    Raises:
        ValueError: the connection reaches another server, database or
            schema; nothing was written.
        DriverError: the statement failed; the caller's transaction is as it was.
    """
    with translate("enqueue on the caller's connection"):
        if isinstance(connection, psycopg.AsyncConnection):
            return await _enqueue_async(connection, params, store)
        return await asyncio.to_thread(_enqueue_sync, connection, params, store)


async def _enqueue_async(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any], store: StoreIdentity
) -> bool:
    async with conn.cursor(row_factory=dict_row) as cur:
        try:
            # never prepared: a prepared statement holds one command only
            await cur.execute(_SAVEPOINT_AND_IDENTITY, prepare=False)
            cur.nextset()
            _refuse_other_store(StoreIdentity.from_row(await cur.fetchone()), store)
            await cur.execute(QUERIES["enqueue_workflow"], params)
            row = await cur.fetchone()
        except BaseException:
            await _undo_async(conn)
            raise
        await cur.execute(_RELEASE)
    return row is not None


async def _undo_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        await conn.execute(_ROLLBACK_TO)
        await conn.execute(_RELEASE)


def _enqueue_sync(
    conn: psycopg.Connection[Any], params: dict[str, Any], store: StoreIdentity
) -> bool:
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            cur.execute(_SAVEPOINT_AND_IDENTITY, prepare=False)
            cur.nextset()
            _refuse_other_store(StoreIdentity.from_row(cur.fetchone()), store)
            cur.execute(QUERIES["enqueue_workflow"], params)
            row = cur.fetchone()
        except BaseException:
            if conn.info.transaction_status in (
                TransactionStatus.INTRANS,
                TransactionStatus.INERROR,
            ):
                conn.execute(_ROLLBACK_TO)
                conn.execute(_RELEASE)
            raise
        cur.execute(_RELEASE)
    return row is not None
