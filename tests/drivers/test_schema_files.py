"""Each SQL store's checked-in schema.sql is exactly what its migrations yield."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

import cereal.drivers.sqlite
from cereal.drivers._schema_file import REGENERATE, read_schema_file, schema_file_text
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._schema import dump_schema as dump_postgres
from cereal.drivers.sqlite import SQLiteDriver
from cereal.drivers.sqlite._schema import dump_schema as dump_sqlite

SQLITE_MIGRATIONS = Path(cereal.drivers.sqlite.__file__).parent / "migrations"


def stale(package: str) -> str:
    path = "src/" + package.replace(".", "/") + "/schema.sql"
    return f"{path} differs from what the migrations yield: run {REGENERATE}"


def with_search_path(dsn: str, schema: str) -> str:
    # the libpq setting a gRPC domain's store is opened with (postgres_empty_dsn is a URL)
    parts = urlsplit(dsn)
    options = urlencode([("options", f'--search_path="{schema}"')])
    return urlunsplit(parts._replace(query="&".join(q for q in (parts.query, options) if q)))


def sqlite_dump(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return dump_sqlite(conn)
    finally:
        conn.close()


async def test_sqlite_schema_file_is_what_the_migrations_yield(db_path: str) -> None:
    await SQLiteDriver(db_path).migrate()

    dumped = schema_file_text("SQLite", sqlite_dump(db_path))

    assert dumped == read_schema_file("cereal.drivers.sqlite"), stale("cereal.drivers.sqlite")


async def test_sqlite_schema_file_builds_the_schema_it_shows(tmp_path: Path, db_path: str) -> None:
    # the normalised text is still SQLite's: run as a script, it builds the same objects
    await SQLiteDriver(db_path).migrate()
    built = str(tmp_path / "built.db")
    conn = sqlite3.connect(built)
    try:
        conn.executescript(read_schema_file("cereal.drivers.sqlite"))
    finally:
        conn.close()

    migrated_objects = sqlite_dump(db_path).split("\n", 1)
    built_objects = sqlite_dump(built).split("\n", 1)

    newest = max(path.stem for path in SQLITE_MIGRATIONS.glob("*.sql"))
    assert migrated_objects[0] == f"-- Latest migration: {newest}"
    assert built_objects[0] == "-- No migration applied."
    assert built_objects[1] == migrated_objects[1]


async def test_postgres_schema_file_is_what_the_migrations_yield(postgres_empty_dsn: str) -> None:
    await PostgresDriver(postgres_empty_dsn).migrate()

    with psycopg.connect(postgres_empty_dsn) as conn:
        dumped = schema_file_text("PostgreSQL", dump_postgres(conn))

    assert dumped == read_schema_file("cereal.drivers.postgres"), stale("cereal.drivers.postgres")


async def test_postgres_schema_dumps_the_same_from_a_domain_schema(postgres_empty_dsn: str) -> None:
    # a gRPC domain's store lives in a schema of its own; its name (quoted here) is left out
    schema = "cereal_billing-eu"
    with psycopg.connect(postgres_empty_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    domain_dsn = with_search_path(postgres_empty_dsn, schema)
    await PostgresDriver(domain_dsn).migrate()

    with psycopg.connect(domain_dsn) as conn:
        assert conn.execute("SELECT current_schema()").fetchone() == (schema,)
        dumped = schema_file_text("PostgreSQL", dump_postgres(conn))
    with psycopg.connect(postgres_empty_dsn) as conn:
        public = dump_postgres(conn)

    assert dumped == read_schema_file("cereal.drivers.postgres"), stale("cereal.drivers.postgres")
    assert public == "-- No migration applied.\n"
