"""Enqueue on the caller's own psycopg connection, inside its open transaction.

The outbox pattern: an application writes its own rows and the workflow
instance in one transaction, so both exist or neither does. The enqueue is
the driver's usual single statement (instance, start event, ``pg_notify``),
run inside a savepoint so that a failure leaves the caller's transaction
usable. The connection must reach the driver's own store: the savepoint
travels with a query of the session's
:class:`~cereal.drivers.postgres._store_identity.StoreIdentity` (one round
trip for both), and a connection to another server, database or schema is
refused before anything is written. ``NOTIFY`` is transactional: it is
delivered when, and only if, the caller commits, so workers wake after the
commit. Its sender token is not any driver's own, so the LISTEN connection of
this very driver wakes its Managers too (the enqueue cannot wake them
directly: it does not know when the commit happens). Nothing here commits or
rolls back.
"""

from __future__ import annotations

import asyncio
from typing import Any, LiteralString

import psycopg
from psycopg.pq import PipelineStatus, TransactionStatus
from psycopg.rows import dict_row

from cereal.drivers.postgres._db import QUERIES, translate
from cereal.drivers.postgres._store_identity import StoreIdentity, refuse_other_store

CALLER_SENDER = "caller-transaction"
"""The sender token of notes sent by a caller's commit (no driver uses it)."""

_SAVEPOINT = "SAVEPOINT cereal_enqueue"
_RELEASE = "RELEASE SAVEPOINT cereal_enqueue"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT cereal_enqueue"

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]


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


def _with_savepoint(identity_query: LiteralString) -> LiteralString:
    """The savepoint, then ``identity_query``: two statements in one simple-protocol round trip.

    The savepoint comes first, so that a failing identity query is rolled back too.
    """
    return _SAVEPOINT + "; " + identity_query


def _pipelined(conn: AnyConnection) -> bool:
    """True in psycopg's pipeline mode: statements are sent one by one, unanswered."""
    return conn.info.pipeline_status != PipelineStatus.OFF


async def _enqueue_async(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any], store: StoreIdentity
) -> bool:
    async with conn.cursor(row_factory=dict_row) as cur:
        try:
            if _pipelined(conn):  # one command per statement; they share a round trip anyway
                await cur.execute(_SAVEPOINT)
                await cur.execute(store.query)
            else:  # never prepared: a prepared statement holds one command only
                await cur.execute(_with_savepoint(store.query), prepare=False)
                cur.nextset()
            refuse_other_store(StoreIdentity.from_row(await cur.fetchone()), store)
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
            if _pipelined(conn):
                cur.execute(_SAVEPOINT)
                cur.execute(store.query)
            else:
                cur.execute(_with_savepoint(store.query), prepare=False)
                cur.nextset()
            refuse_other_store(StoreIdentity.from_row(cur.fetchone()), store)
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
