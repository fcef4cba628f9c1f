"""The live-worker SQL files of both SQL drivers: every query used, every used query there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cereal.drivers.postgres import _workers as postgres_workers
from cereal.drivers.sqlite import _workers as sqlite_workers

SOURCE = Path(__file__).parents[2] / "src" / "cereal" / "drivers"
# a worker query is used as WORKER_SQL["name"] (SQLite) or _rows(conn, "name", ...) (PostgreSQL)
USE = re.compile(r"""WORKER_SQL\["([a-z_]+)"\]|_rows\(\s*conn,\s*"([a-z_]+)\"""")


@pytest.mark.parametrize(
    ("folder", "queries"),
    [("sqlite", sqlite_workers.WORKER_SQL), ("postgres", postgres_workers.WORKER_SQL)],
)
def test_every_worker_query_is_used_and_every_used_one_exists(
    folder: str, queries: dict[str, str]
) -> None:
    text = (SOURCE / folder / "_workers.py").read_text()
    used = {first or second for first, second in USE.findall(text)}
    assert used == set(queries)


def test_postgres_worker_queries_bind_every_value() -> None:
    for name, text in postgres_workers.WORKER_SQL.items():
        assert re.findall(r"%(?!\()", text.replace("%%", "")) == [], name
