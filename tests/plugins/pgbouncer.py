"""A real PgBouncer in transaction-pooling mode, in front of the tests' PostgreSQL.

The session starts one throwaway ``pgbouncer`` process (its own ini, userlist
and log in a temp dir, a free port on 127.0.0.1, ``pool_mode = transaction``,
``auth_type = trust``) pointing at the server the postgres plugin found, and
stops it at the end. As root, PgBouncer refuses to run, so the ini tells it to
switch to the ``postgres`` user after startup.

Without a ``pgbouncer`` binary (on PATH or ``/usr/sbin/pgbouncer``; Debian's
package is ``pgbouncer``) the tests that need it are skipped with the reason,
except under ``CI=true``, where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests._waiting import wait_until_sync
from tests.plugins.postgres import PostgresServer

CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/bin/pgbouncer")


def _find_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((path for path in CANDIDATES if os.access(path, os.X_OK)), None)


def _unavailable(reason: str) -> None:
    message = f"PgBouncer tests need PgBouncer: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(value: str) -> str:
    """A value for PgBouncer's [databases] connection string (libpq-style quoting)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class PgBouncer:
    """A running PgBouncer: where it listens and how to reach a database through it."""

    host: str
    port: int
    root: Path

    def url(self, database_dsn: str) -> str:
        """``database_dsn`` (a PostgreSQL URL) rewritten to go through this PgBouncer."""
        parts = urlsplit(database_dsn)
        user = parts.username or "postgres"
        return urlunsplit(parts._replace(netloc=f"{user}@{self.host}:{self.port}"))

    def log(self) -> str:
        """PgBouncer's log so far (for failure messages)."""
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _write_config(root: Path, server: PostgresServer, port: int) -> Path:
    target = conninfo_to_dict(server.dsn)
    user = str(target.get("user") or "postgres")
    # every database name is forwarded to the same server, as the same user
    forward = [f"host={_quote(str(target.get('host') or '/var/run/postgresql'))}"]
    forward.append(f"port={_quote(str(target.get('port') or 5432))}")
    if target.get("password"):
        forward += [f"user={_quote(user)}", f"password={_quote(str(target['password']))}"]
    (root / "userlist.txt").write_text(f'"{user}" ""\n')
    lines = [
        "[databases]",
        "* = " + " ".join(forward),
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {root / 'userlist.txt'}",
        "pool_mode = transaction",
        "max_client_conn = 1000",
        "default_pool_size = 20",
        "server_reset_query =",
        "ignore_startup_parameters = extra_float_digits",
        "log_connections = 0",
        "log_disconnections = 0",
    ]
    if os.geteuid() == 0:
        lines.append("user = postgres")  # PgBouncer will not run as root
    config = root / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    return config


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True, prepare_threshold=None):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    """A PgBouncer (transaction pooling) in front of the test server, for the whole session."""
    binary = _find_binary()
    if binary is None:
        _unavailable(
            "no pgbouncer binary on PATH or in /usr/sbin (Debian: apt-get install pgbouncer)"
        )
        return
    if urlsplit(postgres_server.dsn).scheme not in ("postgresql", "postgres"):
        _unavailable(f"the test server's DSN is not a URL: {postgres_server.origin}")
        return
    root = Path(tempfile.mkdtemp(prefix="cereal-pgbouncer-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    config = _write_config(root, postgres_server, port)
    with (root / "pgbouncer.log").open("ab") as log:
        # run in the foreground: the process is ours to stop, its output goes to our file
        process = subprocess.Popen([binary, str(config)], stdout=log, stderr=log)
    bouncer = PgBouncer("127.0.0.1", port, root)
    try:
        probe = bouncer.url(postgres_server.dsn)
        try:
            wait_until_sync(
                lambda: process.poll() is not None or _reachable(probe),
                what="PgBouncer to accept connections",
                timeout=30,
            )
        except AssertionError:
            pytest.fail(f"PgBouncer did not start:\n{bouncer.log()}", pytrace=False)
        if process.poll() is not None:
            pytest.fail(f"PgBouncer exited with {process.returncode}:\n{bouncer.log()}")
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(root)


@pytest.fixture
def pgbouncer_dsn(pgbouncer: PgBouncer, postgres_dsn: str) -> str:
    """A fresh, migrated database (see ``postgres_dsn``) reached through PgBouncer.

    The URL carries no cereal options; tests add the ones they exercise.
    """
    return pgbouncer.url(postgres_dsn)
