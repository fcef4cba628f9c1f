"""Numbered schema migrations for SQLite, recorded with their checksums.

Each pending migration runs in its own ``BEGIN IMMEDIATE`` transaction (SQLite
DDL is transactional), so processes that open one file at the same time
serialise on the write lock: the first applies a step, the others find it
recorded and move on. A recorded migration whose file changed since, or a
recorded version this code does not know (a newer cereal wrote the file), is a
hard error: the schema would no longer be what the code expects.
"""

from __future__ import annotations

import sqlite3
import time
from typing import LiteralString

from cereal import errors
from cereal.drivers._sqlfiles import Migration, load_migrations

_CREATE_TABLE: LiteralString = """
CREATE TABLE IF NOT EXISTS cereal_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""
_TABLE_EXISTS: LiteralString = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cereal_schema_migrations'"
)
_APPLIED: LiteralString = "SELECT version, name, checksum FROM cereal_schema_migrations"
_RECORD: LiteralString = (
    "INSERT INTO cereal_schema_migrations (version, name, checksum, applied_at) "
    "VALUES (:version, :name, :checksum, :now)"
)


def migrations() -> list[Migration]:
    """The SQLite driver's migrations, ordered by version."""
    return load_migrations("cereal.drivers.sqlite")


def label(migration: Migration) -> str:
    """How a migration is named in reports: ``0001_initial``."""
    return f"{migration.version:04d}_{migration.name}"


def split_statements(sql: str) -> list[str]:
    """Cut a migration script into single statements (``;`` inside strings is safe).

    Raises:
        ValueError: the script ends inside an unfinished statement.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = "".join(
        line for line in buffer.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if leftover:
        raise ValueError(f"migration ends inside an unfinished statement: {leftover[:60]!r}")
    return statements


def apply_migrations(
    conn: sqlite3.Connection, known: list[Migration], applied_here: list[str] | None = None
) -> list[str]:
    """Apply every pending migration; returns the labels of those applied here.

    Run it outside any transaction: it takes ``BEGIN IMMEDIATE`` once per step.
    Each step commits on its own, so a caller that runs this again after an
    error (a busy retry) passes the same ``applied_here`` list: the steps the
    earlier run committed stay reported.

    Raises:
        DriverError: an applied migration changed, or the file is newer than this code.
    """
    if applied_here is None:
        applied_here = []
    if _up_to_date(conn, known):
        return applied_here
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CREATE_TABLE)
            pending = _pending(conn, known)
            if pending is None:
                conn.execute("COMMIT")
                return applied_here
            for statement in split_statements(pending.sql):
                conn.execute(statement)
            conn.execute(
                _RECORD,
                {
                    "version": pending.version,
                    "name": pending.name,
                    "checksum": pending.checksum,
                    "now": time.time(),
                },
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied_here.append(label(pending))


def _up_to_date(conn: sqlite3.Connection, known: list[Migration]) -> bool:
    """Read-only check (no write lock) that every known migration is applied."""
    if conn.execute(_TABLE_EXISTS).fetchone() is None:
        return False
    return _pending(conn, known) is None


def _pending(conn: sqlite3.Connection, known: list[Migration]) -> Migration | None:
    """The first migration not yet applied, after checking the applied ones."""
    applied = {int(row[0]): (str(row[1]), str(row[2])) for row in conn.execute(_APPLIED).fetchall()}
    by_version = {migration.version: migration for migration in known}
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise errors.DriverError(
                f"the database has schema migration {version:04d}_{name}, which this version "
                "of cereal does not know: it was written by a newer cereal; upgrade cereal"
            )
        if migration.checksum != checksum:
            raise errors.DriverError(
                f"schema migration {label(migration)} was applied with checksum "
                f"{checksum[:12]}... but the file now has {migration.checksum[:12]}...: an "
                "applied migration must never change; restore it and add a new migration"
            )
    for migration in known:
        if migration.version not in applied:
            return migration
    return None
