"""PostgreSQL trouble a new user meets, through the real command line and open_driver.

Without the ``postgres`` extra: one line naming what to install. A server
that accepts connections but never answers: a bounded wait, and the first
Ctrl+C (SIGINT) ends the command.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from cereal import errors
from cereal.drivers import open_driver
from tests.system._cereal_process import (
    COMMAND_TIMEOUT,
    SilentServer,
    cereal,
    cli_env,
    live_cereal,
    one_error_line,
)

# A real import failure: psycopg and psycopg_pool cannot be found, as without the extra.
BLOCK_PSYCOPG = """
import sys


class _WithoutPostgresExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("psycopg", "psycopg_pool", "psycopg_binary"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _WithoutPostgresExtra())
"""


def cereal_python(tmp_path: Path, env: dict[str, str], code: str) -> CompletedProcess[str]:
    """Run ``python -c CODE`` with the test's environment additions."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


@pytest.fixture
def without_postgres_extra(tmp_path: Path) -> dict[str, str]:
    """Environment of a Python where ``import psycopg`` fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_PSYCOPG)
    return {"PYTHONPATH": str(site)}


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_the_blocker_really_hides_psycopg(
    tmp_path: Path, without_postgres_extra: dict[str, str]
) -> None:
    done = cereal_python(tmp_path, without_postgres_extra, "import psycopg")
    assert done.returncode != 0
    assert "No module named 'psycopg'" in done.stderr


def test_cli_without_the_postgres_extra_says_what_to_install_in_one_line(
    tmp_path: Path, without_postgres_extra: dict[str, str]
) -> None:
    for command in (["workflows", "list"], ["migrate"], ["schedules", "list"]):
        done = cereal(
            "--db", "postgresql://app@127.0.0.1/app", *command,
            cwd=tmp_path, env=without_postgres_extra,
        )  # fmt: skip
        line = one_error_line(done)
        assert "'postgres' extra" in line
        assert "pip install" in line
        assert "psycopg" in line


def test_open_driver_without_the_postgres_extra_raises_a_clear_import_error(
    tmp_path: Path, without_postgres_extra: dict[str, str]
) -> None:
    script = textwrap.dedent(
        """
        from cereal import errors
        from cereal.drivers import open_driver

        try:
            open_driver("postgresql://app@127.0.0.1/app")
        except errors.MissingDependencyError as exc:
            assert isinstance(exc, ImportError) and isinstance(exc, errors.DriverError)
            print(exc)
        """
    )
    done = cereal_python(tmp_path, without_postgres_extra, script)
    assert done.returncode == 0, done.stderr
    assert "pip install 'psycopg[binary]>=3.2' 'psycopg-pool>=3.2'" in done.stdout
    assert "No module named 'psycopg'" in done.stdout


def test_a_server_that_never_answers_fails_at_the_connect_timeout_in_the_url(
    tmp_path: Path, silent_server: SilentServer
) -> None:
    url = f"postgresql://app@127.0.0.1:{silent_server.port}/app?connect_timeout=1"
    line = one_error_line(cereal("--db", url, "workflows", "list", cwd=tmp_path))
    assert "timeout" in line
    assert silent_server.accepted.is_set()


@pytest.mark.slow
async def test_the_default_connect_timeout_bounds_the_wait_for_a_silent_server(
    silent_server: SilentServer,
) -> None:
    # psycopg alone waits 130 s; the guard is far above cereal's 10 s default
    driver = open_driver(f"postgresql://app@127.0.0.1:{silent_server.port}/app")
    async with asyncio.timeout(90):
        with pytest.raises(errors.DriverError, match="timeout"):
            await driver.migrate()


def test_the_first_sigint_ends_a_command_waiting_for_a_silent_server(
    tmp_path: Path, silent_server: SilentServer
) -> None:
    url = f"postgresql://app@127.0.0.1:{silent_server.port}/app?connect_timeout=600"
    with live_cereal("--db", url, "workflows", "list", cwd=tmp_path) as command:
        assert silent_server.accepted.wait(60), "the command never connected"
        command.process.send_signal(signal.SIGINT)
        status, stderr = command.finish(timeout=60)
    assert status == 130, stderr
    assert stderr.strip() == "error: interrupted"


def test_the_first_sigint_stops_a_worker_still_connecting(
    tmp_path: Path, silent_server: SilentServer
) -> None:
    url = f"postgresql://app@127.0.0.1:{silent_server.port}/app?connect_timeout=600"
    (tmp_path / "silent_app.py").write_text(
        f"import cereal\n\nmanager = cereal.Manager(cereal.open_driver({url!r}))\n"
    )
    with live_cereal("worker", "silent_app:manager", cwd=tmp_path) as worker:
        assert silent_server.accepted.wait(60), "the worker never connected"
        worker.process.send_signal(signal.SIGINT)
        status, stderr = worker.finish(timeout=60)
    assert status == 130, stderr
    assert "SIGINT received while starting: stopping" in stderr
    assert "Traceback" not in stderr
