"""PostgreSQL migrations: from empty, idempotent, concurrent, tamper-evident."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from cereal import errors
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._migrate import migrations

ALL = [f"{m.version:04d}_{m.name}" for m in migrations()]


def recorded(dsn: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM cereal_schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


async def test_migrate_from_empty_then_again_is_a_no_op(postgres_empty_dsn: str) -> None:
    driver = PostgresDriver(postgres_empty_dsn)

    assert await driver.migrate() == ALL
    assert await driver.migrate() == []

    assert recorded(postgres_empty_dsn) == [(m.version, m.name, m.checksum) for m in migrations()]
    async with driver:  # init migrates too: nothing left to do, and it works
        await driver.enqueue_workflow("wf", "i", None)


async def test_init_migrates_an_empty_database(postgres_empty_dsn: str) -> None:
    async with PostgresDriver(postgres_empty_dsn) as driver:
        await driver.enqueue_workflow("wf", "i", b"1")
        assert (await driver.get_workflow_instance("wf", "i")).parameters == b"1"
    assert len(recorded(postgres_empty_dsn)) == len(ALL)


def test_three_processes_migrate_at_once(postgres_empty_dsn: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from cereal.drivers.postgres import PostgresDriver\n"
        "print(','.join(asyncio.run(PostgresDriver(sys.argv[1]).migrate())))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_empty_dsn],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out.strip())

    # exactly one process applied everything; the others found nothing to do
    assert sorted(outputs) == ["", "", ",".join(ALL)]
    assert len(recorded(postgres_empty_dsn)) == len(ALL)


async def test_a_changed_migration_is_a_hard_error(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE cereal_schema_migrations SET checksum = 'edited' WHERE version = 1")

    with pytest.raises(errors.DriverError, match="changed after it was applied"):
        await PostgresDriver(postgres_dsn).migrate()
    driver = PostgresDriver(postgres_dsn)
    with pytest.raises(errors.DriverError, match="changed after it was applied"):
        await driver.init()
    assert not driver.is_open


async def test_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO cereal_schema_migrations (version, name, checksum)"
            " VALUES (9999, 'from_the_future', 'x')"
        )
    with pytest.raises(errors.DriverError, match="does not know"):
        await PostgresDriver(postgres_dsn).migrate()


async def test_unreachable_server_is_a_driver_error() -> None:
    driver = PostgresDriver("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(errors.DriverError):
        await driver.init()
    assert not driver.is_open
