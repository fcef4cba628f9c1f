"""PostgreSQL test helpers: a schema as older cereal left it, every plan a session runs,
and who waits for an advisory lock."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from cereal.drivers._sqlfiles import Migration
from cereal.drivers.postgres._migrate import _CREATE_TABLE

_AUTO_EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_format = 'json'",
    "SET client_min_messages = log",
)


def apply_migrations_by_hand(conn: psycopg.Connection[Any], applied: list[Migration]) -> None:
    """Bring an empty database to the schema ``applied`` leaves, recorded as older cereal did."""
    conn.execute(_CREATE_TABLE)
    for migration in applied:
        with conn.transaction():
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO cereal_schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )


async def log_every_plan(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """From now on, collect the JSON plan (analyzed, with buffers) of every statement on ``conn``.

    Nested statements (inside plpgsql functions and triggers) are included.
    Needs the ``auto_explain`` module on the server.
    """
    plans: list[dict[str, Any]] = []
    conn.add_notice_handler(lambda notice: keep_plan(plans, notice.message_primary))
    for setting in _AUTO_EXPLAIN:
        await conn.execute(setting)
    return plans


def keep_plan(plans: list[dict[str, Any]], message: str | None) -> None:
    """Keep the JSON plan an ``auto_explain`` notice carries (``duration: ... plan: {...}``)."""
    if message is not None and "plan:" in message:
        plans.append(json.loads(message.split("plan:", 1)[1]))


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON plan node and all nodes below it."""
    found = [node]
    for child in node.get("Plans", []):
        found.extend(plan_nodes(child))
    return found


def someone_waits_for_an_advisory_lock(observer: psycopg.Connection[Any]) -> bool:
    """Whether a session of the database waits for an advisory lock (a held key's)."""
    return bool(
        observer.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchall()
    )
