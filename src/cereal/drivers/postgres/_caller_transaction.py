"""Enqueue on the caller's own psycopg connection, inside its open transaction.

The outbox pattern: an application writes its own rows and the workflow
instance in one transaction, so both exist or neither does. The enqueue is
the driver's usual single statement (instance, start event, ``pg_notify``),
run inside a savepoint so that a failure leaves the caller's transaction
usable. ``NOTIFY`` is transactional: it is delivered when, and only if, the
caller commits, so workers wake after the commit. Its sender token is not
any driver's own, so the LISTEN connection of this very driver wakes its
Managers too (the enqueue cannot wake them directly: it does not know when
the commit happens). Nothing here commits or rolls back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from cereal.drivers.postgres._db import QUERIES, translate

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


async def enqueue(connection: AnyConnection, params: dict[str, Any]) -> bool:
    """Run the enqueue statement on ``connection``; False when the names are live.

    A plain ``Connection`` runs it in a worker thread, off the event loop.

    Raises:
        DriverError: the statement failed (e.g. cereal's tables are not in
            that database); the caller's transaction is as it was.
    """
    with translate("enqueue on the caller's connection"):
        if isinstance(connection, psycopg.AsyncConnection):
            return await _enqueue_async(connection, params)
        return await asyncio.to_thread(_enqueue_sync, connection, params)


async def _enqueue_async(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> bool:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SAVEPOINT)
        try:
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


def _enqueue_sync(conn: psycopg.Connection[Any], params: dict[str, Any]) -> bool:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SAVEPOINT)
        try:
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
