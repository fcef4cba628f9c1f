"""Seeding a large task backlog fast, straight into the real driver's tables (scenario e).

Enqueuing a million tasks through the engine takes longer than the rest of
the bench, and the setup is not what (e) measures. So the engine itself makes
the instance and its first tasks (``FanOut.on_start`` through the public API),
and this module copies one of those task rows as many times as needed in one
``INSERT ... SELECT`` and raises the instance's ``enqueued_tasks`` counter to
match, in the same transaction.

Every column of the engine's own row is copied except the identity, whatever
columns the current schema has, so a new column keeps its engine-written value.
The column names come from the database's catalogue, never from user input,
and are quoted as identifiers.
"""

from __future__ import annotations

import sqlite3
import time

import psycopg
from psycopg import sql

from cereal.drivers import sqlite_path_from_url

TASKS = "cereal_tasks"
INSTANCES = "cereal_workflow_instances"


def _postgres(url: str, workflow: str, instance: str, total: int) -> int:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            sql.SQL("SELECT id FROM {} WHERE workflow_name = %s AND instance_name = %s").format(
                sql.Identifier(INSTANCES)
            ),
            (workflow, instance),
        ).fetchone()
        if found is None:
            raise RuntimeError(f"no live instance {workflow}/{instance} to seed")
        instance_id = found[0]
        have, template = conn.execute(
            sql.SQL("SELECT count(*), max(id) FROM {} WHERE instance_id = %s").format(
                sql.Identifier(TASKS)
            ),
            (instance_id,),
        ).fetchone() or (0, None)
        if template is None:
            raise RuntimeError(f"{workflow}/{instance} has no task to copy")
        extra = total - int(have)
        if extra <= 0:
            return 0
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s"
                " AND is_identity = 'NO' AND is_generated = 'NEVER'"
                " ORDER BY ordinal_position",
                (TASKS,),
            )
        ]
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        conn.execute(
            sql.SQL(
                "INSERT INTO {tasks} ({names}) SELECT {names} FROM {tasks}"
                " CROSS JOIN generate_series(1, %s) WHERE id = %s"
            ).format(tasks=sql.Identifier(TASKS), names=names),
            (extra, template),
        )
        conn.execute(
            sql.SQL("UPDATE {} SET enqueued_tasks = enqueued_tasks + %s WHERE id = %s").format(
                sql.Identifier(INSTANCES)
            ),
            (extra, instance_id),
        )
        conn.commit()
    # fresh statistics and visibility map, as autovacuum would give a backlog this
    # size anyway (else it may analyse mid-measurement, inside the window)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TASKS)))
    return extra


def _quoted(name: str) -> str:
    # a name read from the database's own catalogue; refuse anything odd anyway
    if not name.isidentifier():
        raise RuntimeError(f"unexpected column name {name!r}")
    return '"' + name + '"'


def _sqlite(url: str, workflow: str, instance: str, total: int) -> int:
    conn = sqlite3.connect(sqlite_path_from_url(url), timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        found = conn.execute(
            f"SELECT id FROM {INSTANCES} WHERE workflow_name = ? AND instance_name = ?",
            (workflow, instance),
        ).fetchone()
        if found is None:
            raise RuntimeError(f"no live instance {workflow}/{instance} to seed")
        instance_id = found[0]
        have, template = conn.execute(
            f"SELECT count(*), max(id) FROM {TASKS} WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        if template is None:
            raise RuntimeError(f"{workflow}/{instance} has no task to copy")
        extra = total - int(have)
        if extra > 0:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({TASKS})") if not row[5]]
            names = ", ".join(_quoted(c) for c in columns)
            conn.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?)"
                f" INSERT INTO {TASKS} ({names}) SELECT {names} FROM {TASKS}, n WHERE id = ?",
                (extra, template),
            )
            conn.execute(
                f"UPDATE {INSTANCES} SET enqueued_tasks = enqueued_tasks + ? WHERE id = ?",
                (extra, instance_id),
            )
        conn.execute("COMMIT")
        # the WAL now holds the whole backlog: fold it into the database file now,
        # not during the measurement
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return max(extra, 0)


def multiply_tasks(url: str, workflow: str, instance: str, total: int) -> float:
    """Give the live instance ``total`` queued tasks by copying its newest one; seconds taken.

    The instance must exist and hold at least one queued task (its ``on_start``
    has committed) and no worker may be draining it yet.
    """
    began = time.monotonic()
    if url.startswith("sqlite:"):
        _sqlite(url, workflow, instance, total)
    else:
        _postgres(url, workflow, instance, total)
    return time.monotonic() - began
