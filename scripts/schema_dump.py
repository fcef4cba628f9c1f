#!/usr/bin/env python3
"""Write each SQL store's schema.sql: the schema its migrations yield, dumped canonically.

Run with the project's environment (cereal and its dependencies importable):

    .venv/bin/python scripts/schema_dump.py            # rewrite both schema.sql files
    .venv/bin/python scripts/schema_dump.py --check    # exit 1 if either is stale
    .venv/bin/python scripts/schema_dump.py --store sqlite

SQLite is migrated in a temporary file. PostgreSQL is migrated in a throwaway
database created (and dropped) on the server of --dsn, or of
CEREAL_TEST_POSTGRES_DSN, or postgresql://postgres@127.0.0.1:5432/postgres;
the role needs CREATEDB. Both are migrated by opening the driver, as any
process does. tests/drivers/test_schema_files.py fails when a checked-in file
differs from what this script writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = ROOT / "src" / "cereal" / "drivers"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def sqlite_schema() -> str:
    """The text of sqlite/schema.sql, from a fresh file migrated by the driver."""
    from cereal.drivers._schema_file import schema_file_text
    from cereal.drivers.sqlite import SQLiteDriver
    from cereal.drivers.sqlite._schema import dump_schema

    with tempfile.TemporaryDirectory(prefix="cereal-schema-") as folder:
        path = os.path.join(folder, "cereal.db")
        asyncio.run(SQLiteDriver(path).migrate())
        conn = sqlite3.connect(path)
        try:
            return schema_file_text("SQLite", dump_schema(conn))
        finally:
            conn.close()


def postgres_schema(admin_dsn: str) -> str:
    """The text of postgres/schema.sql, from a throwaway database migrated by the driver."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from cereal.drivers._schema_file import schema_file_text
    from cereal.drivers.postgres import PostgresDriver
    from cereal.drivers.postgres._schema import dump_schema

    name = f"cereal_schema_dump_{uuid.uuid4().hex[:12]}"
    database = sql.Identifier(name)
    dsn = make_conninfo(admin_dsn, dbname=name)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(database))
    try:
        asyncio.run(PostgresDriver(dsn).migrate())
        with psycopg.connect(dsn) as conn:
            return schema_file_text("PostgreSQL", dump_schema(conn))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--store", choices=("sqlite", "postgres"), action="append")
    parser.add_argument("--dsn", help="a PostgreSQL server's maintenance database")
    args = parser.parse_args()
    dsn = args.dsn or os.environ.get("CEREAL_TEST_POSTGRES_DSN") or DEFAULT_DSN
    makers = {"sqlite": sqlite_schema, "postgres": lambda: postgres_schema(dsn)}
    stale = []
    for store in args.store or list(makers):
        path = DRIVERS / store / "schema.sql"
        text = makers[store]()
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "stale" if args.check else "written"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
