"""``cereal workflows show`` names the key that started a run; ``workflows retention``
shows the retention the trims applied. Through the real command, on SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

from cereal import Manager
from cereal.drivers import open_driver
from cereal.models import HistoryRetention, WorkflowRetention
from tests.system._cereal_process import cereal


async def test_show_names_the_idempotency_key_that_started_the_run(tmp_path: Path) -> None:
    # Given a run started with an idempotency key (no worker runs it)
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    # (a key in rich's markup syntax: printed as it is)
    async with Manager(open_driver(url)) as manager:
        await manager.enqueue_workflow("orders", "o-1", None, idempotency_key="[/]req-42")
        await manager.enqueue_workflow("orders", "o-2", None, idempotency_key="old")
        await manager.kill_workflow("orders", "o-2")
        await manager.enqueue_workflow("orders", "o-2", None)

    # When it is shown
    shown = cereal("--db", url, "workflows", "show", "orders", "o-1", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr

    # Then --json and the table name the key
    assert json.loads(shown.stdout)["idempotency_key"] == "[/]req-42"
    table = cereal("--db", url, "workflows", "show", "orders", "o-1", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "idempotency key" in table.stdout and "[/]req-42" in table.stdout
    # and a later run of names an earlier keyed run had shows none
    other = cereal("--db", url, "workflows", "show", "orders", "o-2", "--json", cwd=tmp_path)
    assert json.loads(other.stdout)["idempotency_key"] is None


async def test_retention_shows_what_the_trims_applied(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    # Given a store no trim has run on
    empty = cereal("--db", url, "workflows", "retention", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "no retention applied yet" in empty.stdout

    # When a trim applies a retention
    retention = HistoryRetention(
        max_rows=2000, margin_rows=200, per_workflow={"reports": WorkflowRetention(max_runs=5)}
    )
    # (through the driver: a started Manager's own sweeps would apply theirs)
    async with open_driver(url) as driver:
        await driver.trim_history(retention)

    # Then the command shows its rules, in words and in --json
    shown = cereal("--db", url, "workflows", "retention", cwd=tmp_path).stdout
    assert "all workflows: at most 2000 runs (trimmed to 1800)" in shown
    assert "reports: the newest 5 runs" in shown
    rules = json.loads(
        cereal("--db", url, "workflows", "retention", "--json", cwd=tmp_path).stdout
    )["rules"]
    assert [(r["workflow_name"], r["max_rows"], r["max_runs"]) for r in rules] == [
        (None, 2000, None),
        ("reports", None, 5),
    ]
    assert all(r["applied_at"] for r in rules)
