"""PostgreSQL for tests: find a server, migrate a template once, clone it per test.

Where the server comes from, in order:

1. ``CEREAL_TEST_POSTGRES_DSN`` (must work when set);
2. a server on this host (127.0.0.1:5432 as ``postgres`` or ``root``, or the
   default unix socket);
3. a throwaway cluster made with ``initdb``/``pg_ctl`` (on PATH or under
   ``/usr/lib/postgresql/*/bin``) in a temp dir on a free port, stopped at the
   end of the session (as root it runs as the ``postgres`` user via runuser);
4. otherwise PostgreSQL tests are skipped with the reason, except under
   ``CI=true``, where they fail instead.

The session migrates one template database (``cereal_tpl_<pid>``); each test
gets ``CREATE DATABASE cereal_t_<uuid> TEMPLATE cereal_tpl_<pid>``, dropped at
teardown. Database names are ours; they are still quoted as identifiers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from bench.pg_cluster import ThrowawayCluster, find_binaries
from psycopg import sql
from psycopg.conninfo import make_conninfo

ENV_DSN = "CEREAL_TEST_POSTGRES_DSN"
LOCAL_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://root@127.0.0.1:5432/postgres",
    "postgresql:///postgres?host=/var/run/postgresql",
    "postgresql://postgres@/postgres?host=/var/run/postgresql",
)


@dataclass
class PostgresServer:
    """A reachable server and how to reach its maintenance database."""

    dsn: str
    origin: str

    def database_dsn(self, name: str) -> str:
        """The DSN of database ``name`` on this server (a URL when ours is one)."""
        parts = urlsplit(self.dsn)
        if parts.scheme in ("postgresql", "postgres"):
            query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "dbname"])
            return urlunsplit(parts._replace(path=f"/{name}", query=query))
        return make_conninfo(self.dsn, dbname=name)


def _usable(dsn: str) -> str | None:
    """None if ``dsn`` connects with a role that may create databases, else why not."""
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not row or not row[0]:
        return "the role may not create databases"
    return None


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL tests need a server: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server found (or started) once per session."""
    env = os.environ.get(ENV_DSN)
    if env:
        problem = _usable(env)
        if problem is not None:
            pytest.fail(f"{ENV_DSN} is set but unusable: {problem}", pytrace=False)
        yield PostgresServer(env, ENV_DSN)
        return
    tried: list[str] = []
    for dsn in LOCAL_CANDIDATES:
        problem = _usable(dsn)
        if problem is None:
            yield PostgresServer(dsn, "local server")
            return
        tried.append(f"{dsn}: {problem}")
    binaries = find_binaries()
    if binaries is None:
        _unavailable(f"set {ENV_DSN}; no local server ({'; '.join(tried)}); no initdb/pg_ctl")
        return
    try:
        cluster = ThrowawayCluster(*binaries)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        _unavailable(f"set {ENV_DSN}; no local server; a throwaway cluster failed: {detail}")
        return
    try:
        yield PostgresServer(cluster.dsn, "throwaway cluster")
    finally:
        cluster.stop()


def _terminate_and_drop(admin: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> Iterator[str]:
    """The name of a database migrated once per session, cloned by each test."""
    from cereal.drivers.postgres import PostgresDriver

    name = f"cereal_tpl_{os.getpid()}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        _terminate_and_drop(admin, name)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    driver = PostgresDriver(postgres_server.database_dsn(name))
    try:
        # fixtures may be set up while an event loop runs: migrate on a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as worker:
            worker.submit(lambda: asyncio.run(driver.migrate())).result()
        yield name
    finally:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
            _terminate_and_drop(admin, name)


@pytest.fixture
def postgres_admin_dsn(postgres_server: PostgresServer) -> str:
    """A DSN of the server's maintenance database (for tests that administer)."""
    return postgres_server.dsn


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"cereal_t_{uuid.uuid4().hex[:20]}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(postgres_template)
    )
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        for attempt in range(50):
            try:
                admin.execute(create)
                break
            except psycopg.errors.ObjectInUse:  # the template still has a session
                if attempt == 49:
                    raise
                time.sleep(0.1)
    try:
        yield postgres_server.database_dsn(name)
    finally:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
            _terminate_and_drop(admin, name)


@pytest.fixture
def postgres_empty_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests); dropped afterwards."""
    name = f"cereal_e_{uuid.uuid4().hex[:20]}"
    with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.database_dsn(name)
    finally:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
            _terminate_and_drop(admin, name)
