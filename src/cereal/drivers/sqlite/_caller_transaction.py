"""Enqueue on the caller's own ``sqlite3`` connection, inside its open transaction.

The outbox pattern: an application writes its own rows and the workflow
instance in one transaction, so both exist or neither does. The statements
run on the caller's connection (in the caller's thread, as ``sqlite3``
connections require), inside a savepoint so that a failed enqueue leaves the
caller's transaction as it was. Nothing here commits or rolls back the
caller's transaction. Workers hear of the commit through ``PRAGMA
data_version``, which changes for the driver's connection when any other
connection commits.
"""

from __future__ import annotations

import os
import sqlite3
from typing import LiteralString

from cereal import errors
from cereal.drivers.sqlite import _workflows

_BEGIN: dict[str, LiteralString] = {
    "": "BEGIN",
    "DEFERRED": "BEGIN DEFERRED",
    "IMMEDIATE": "BEGIN IMMEDIATE",
    "EXCLUSIVE": "BEGIN EXCLUSIVE",
}


def check_connection(connection: object, path: str) -> sqlite3.Connection:
    """The caller's connection, once it is known to be a ``sqlite3.Connection`` on ``path``.

    Raises:
        TypeError: not a ``sqlite3.Connection``.
        ValueError: it is open on another database file (or none).
    """
    if not isinstance(connection, sqlite3.Connection):
        raise TypeError(
            "the SQLite driver enqueues on a sqlite3.Connection to its own database file, "
            f"got {type(connection).__module__}.{type(connection).__qualname__}"
        )
    cursor = connection.cursor()
    cursor.row_factory = None
    files = {str(row[1]): str(row[2]) for row in cursor.execute("PRAGMA database_list")}
    main = files.get("main", "")
    if not main or not _same_file(main, path):
        raise ValueError(
            f"the connection is open on {main or 'an in-memory database'!r}, not on the "
            f"driver's database file {path!r}: enqueue on a connection to the same file"
        )
    return connection


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _ensure_transaction(connection: sqlite3.Connection) -> None:
    """Open the caller's transaction the way ``sqlite3`` would on its first write.

    Raises:
        ValueError: the connection is in autocommit mode with no transaction
            open, so the instance would commit at once, alone.
    """
    if connection.in_transaction:
        return
    autocommit = getattr(connection, "autocommit", None)  # Python 3.12+; -1 = legacy
    level = connection.isolation_level
    if autocommit is True or (autocommit in (None, -1) and level is None):
        raise ValueError(
            "the sqlite3 connection is in autocommit mode with no open transaction: "
            "execute BEGIN first, so that the instance commits with your own writes"
        )
    # legacy mode: sqlite3 would issue this BEGIN before our INSERT by itself
    connection.execute(_BEGIN.get((level or "").upper(), "BEGIN"))


def enqueue(
    connection: sqlite3.Connection,
    workflow_name: str,
    instance_name: str,
    parameters: bytes | None,
    traceparent: str | None = None,
) -> None:
    """Create the instance and its start event in the caller's transaction.

    Raises:
        WorkflowInstanceExistsError: a live instance with these names exists
            (as the caller's transaction sees it); nothing was written.
        DriverError: SQLite failed (e.g. the file stayed locked past the
            connection's timeout); the caller's transaction is as it was.
    """
    try:
        _ensure_transaction(connection)
        cursor = connection.cursor()
        cursor.row_factory = sqlite3.Row
        cursor.execute("SAVEPOINT cereal_enqueue")
        try:
            created = _workflows.enqueue(
                cursor, workflow_name, instance_name, parameters, traceparent
            )
        except BaseException:
            cursor.execute("ROLLBACK TO cereal_enqueue")
            cursor.execute("RELEASE cereal_enqueue")
            raise
        cursor.execute("RELEASE cereal_enqueue")
    except sqlite3.Error as exc:
        raise errors.DriverError(
            f"SQLite: enqueue on the caller's connection failed: {exc}"
        ) from exc
    if not created:
        raise errors.WorkflowInstanceExistsError()
