"""Schema migrations: numbered SQL files applied under an advisory lock.

Every process that opens the driver runs :func:`apply_migrations`; a
transaction-level ``pg_advisory_xact_lock`` makes concurrent migrators take
turns, so each pending migration is applied exactly once, each in its own
transaction (which also takes the lock and rereads what is recorded), and
recorded in ``cereal_schema_migrations`` with the checksum of its file.
A recorded checksum that differs from the file's is a hard error: an applied
migration must never change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cereal import errors
from cereal.drivers._sqlfiles import Migration, load_migrations

logger = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x63657265616C01
"""The advisory lock key serialising migrators (per database)."""

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS cereal_schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrations() -> list[Migration]:
    """The driver's migrations, ordered by version."""
    return load_migrations("cereal.drivers.postgres")


async def apply_migrations(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply pending migrations on ``conn`` (an autocommit connection).

    Returns:
        The names (``NNNN_description``) of the migrations applied now.

    Raises:
        DriverError: an applied migration was changed, the database holds a
            newer schema than this code knows, or the database failed.
    """
    known = migrations()
    applied_now: list[str] = []
    deadlocks = 0
    try:
        while True:
            try:
                migration = await _apply_next(conn, known)
            except psycopg.errors.DeadlockDetected:
                # a live worker held a table this migration locks, and waited on one
                # it had locked: PostgreSQL aborted the migration's side, which
                # rolled back whole; take it again
                deadlocks += 1
                if deadlocks > _DEADLOCK_RETRIES:
                    raise
                logger.warning("a migration met a deadlock with live workers; retrying")
                await asyncio.sleep(0.05 * deadlocks)
                continue
            if migration is None:
                break
            label = _label(migration)
            logger.info("applied migration %s", label)
            applied_now.append(label)
    except errors.CerealError:
        raise
    except (psycopg.Error, OSError) as exc:
        raise errors.DriverError(f"PostgreSQL migration failed: {exc}") from exc
    return applied_now


_DEADLOCK_RETRIES = 5
"""How many times one run of the migrations takes a migration again after a deadlock."""


async def _apply_next(
    conn: psycopg.AsyncConnection[Any], known: list[Migration]
) -> Migration | None:
    """Apply the first pending migration in its own transaction; None when none is pending."""
    # one transaction per migration, each under the transaction-level lock: no
    # session state, so this also works through a transaction-pooling proxy
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(_CREATE_TABLE)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT version, name, checksum FROM cereal_schema_migrations ORDER BY version"
            )
            recorded = {row["version"]: row for row in await cur.fetchall()}
        _check_recorded(known, recorded)
        pending = [m for m in known if m.version not in recorded]
        if not pending:
            return None
        migration = pending[0]
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO cereal_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
    return migration


def _label(migration: Migration) -> str:
    return f"{migration.version:04d}_{migration.name}"


def _check_recorded(known: list[Migration], recorded: dict[int, dict[str, object]]) -> None:
    by_version = {migration.version: migration for migration in known}
    for version, row in recorded.items():
        migration = by_version.get(version)
        if migration is None:
            raise errors.DriverError(
                f"the database schema has migration {version:04d}_{row['name']}, which this"
                " version of cereal does not know; upgrade cereal"
            )
        if row["checksum"] != migration.checksum:
            raise errors.DriverError(
                f"migration {_label(migration)} was changed after it was applied"
                f" (recorded checksum {row['checksum']}, file checksum {migration.checksum});"
                " applied migrations must never be edited"
            )
