"""Where a scenario's data lives: a fresh PostgreSQL database or SQLite file per scenario."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench import procs
from cereal.drivers import sqlite_path_from_url

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/bench"


def with_database(dsn: str, name: str) -> str:
    """``dsn`` with its database replaced by ``name``."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_of(dsn: str) -> str:
    """The database a DSN names."""
    return urlsplit(dsn).path.lstrip("/") or "postgres"


class PostgresStore:
    """Fresh databases beside ``BENCH_DSN``'s, named ``<bench>_cereal_<scenario>``."""

    kind = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.base = database_of(dsn)
        self.admin = with_database(dsn, "postgres")
        self.made: list[str] = []

    def ensure_bench_database(self) -> None:
        """Create the ``BENCH_DSN`` database (the peers' home) if it does not exist."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.base,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.base)))

    def fresh(self, scenario: str) -> str:
        """Drop and create the scenario's database; its URL."""
        name = f"{self.base}_cereal_{scenario}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        return with_database(self.dsn, name)

    def drop(self, url: str) -> None:
        """Drop one scenario's database now (a large one need not wait for the end)."""
        name = database_of(url)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.made:
            self.made.remove(name)

    def cleanup(self) -> None:
        """Drop every database this store made."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.made:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.made.clear()


def xact_commit(dsn: str) -> int:
    """The database's committed-transaction counter (pg_stat_database)."""
    with psycopg.connect(with_database(dsn, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database_of(dsn),)
        ).fetchone()
    return int(row[0]) if row is not None else 0


def backend_cpu(dsn: str) -> dict[int, float]:
    """CPU seconds so far of each server backend connected to the DSN's database, by pid.

    Read from ``/proc``, so only when the server runs on this machine (else empty).
    """
    with psycopg.connect(with_database(dsn, "postgres"), autocommit=True) as conn:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database_of(dsn),)
            )
        ]
    out: dict[int, float] = {}
    for pid in pids:
        try:
            out[pid] = procs.cpu_seconds(pid)
        except (OSError, IndexError, ValueError):  # gone, or not on this machine
            continue
    return out


async def settled_xact_commit(dsn: str, timeout: float = 5.0) -> int:
    """The counter once sessions that just ended have flushed their statistics.

    Backends report at exit, a little after the client has gone: read until two
    reads 0.3 s apart agree, or the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last = await asyncio.to_thread(xact_commit, dsn)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        now = await asyncio.to_thread(xact_commit, dsn)
        if now == last:
            return now
        last = now
    return last


class SqliteStore:
    """A fresh database file per scenario in a temporary directory."""

    kind = "sqlite"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="cereal-bench-")

    def fresh(self, scenario: str) -> str:
        """The URL of a new, empty file."""
        return f"sqlite:///{Path(self._dir.name) / scenario}.db"

    def drop(self, url: str) -> None:
        """Remove one scenario's file (and its WAL) now."""
        path = Path(sqlite_path_from_url(url))
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Remove the files."""
        self._dir.cleanup()
