"""``--limit`` on the listings that lacked it, through the real ``cereal`` command, on each store.

``cereal schedules list`` pages in the store (``--limit`` from ``--offset``);
``cereal workers list`` and ``cereal tasks stats`` read their short lists
whole and show the first ``--limit`` entries. Each says on a last line how to
see the rest, and ``--json`` stays a JSON list with that line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cereal import Manager
from cereal.drivers import open_driver
from cereal.models import NewTask, NewWorker
from tests.conformance._driver_helpers import started
from tests.system._cereal_process import cereal


@pytest.fixture(params=["sqlite", "postgres", "grpc"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'limits.db'}"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))
    server = request.getfixturevalue("grpc_server_factory")(f"sqlite:///{tmp_path / 'g.db'}")
    return str(server.url())


@pytest.fixture
async def three_of_each(store_url: str) -> str:
    """Three schedules (created out of name order), live workers and task names with work."""
    manager = Manager(open_driver(store_url))
    try:
        for instance_name in ("c", "a", "b"):
            await manager.create_workflow_schedule("nightly", instance_name, None, "FREQ=DAILY")
        driver = await manager._storage()
        for worker_id in ("w1", "w2", "w3"):
            await driver.register_worker(
                NewWorker(worker_id, "host-a", 4242, ("wf",), ("t",), "9.9", expiry=600.0)
            )
        tasks = [NewTask(name) for name in ("resize", "upload", "zip")]
        await started(driver, "wf", "run", tasks=tasks)
    finally:
        await manager.stop()
    return store_url


def _ok(*args: str, cwd: Path) -> tuple[str, str]:
    done = cereal(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_schedules_list_pages_by_names(three_of_each: str, tmp_path: Path) -> None:
    db = ("--db", three_of_each)
    first, note = _ok(*db, "schedules", "list", "-n", "2", "--json", cwd=tmp_path)
    assert [s["instance_name"] for s in json.loads(first)] == ["a", "b"]
    assert "more schedules exist: --offset 2 shows the next page" in note

    rest, note = _ok(
        *db, "schedules", "list", "--limit", "2", "--offset", "2", "--json", cwd=tmp_path
    )
    assert [s["instance_name"] for s in json.loads(rest)] == ["c"]
    assert note == ""

    table, _ = _ok(*db, "schedules", "list", "-n", "2", cwd=tmp_path)
    assert "2 schedule(s) (1-2 in name order)" in table
    assert table.rstrip().splitlines()[-1] == (
        "more schedules exist after 2: --offset 2 shows the next page"
    )
    whole, _ = _ok(*db, "schedules", "list", cwd=tmp_path)
    assert "3 schedule(s)" in whole and "more schedules" not in whole


def test_workers_list_shows_the_oldest_limit(three_of_each: str, tmp_path: Path) -> None:
    db = ("--db", three_of_each)
    shown, note = _ok(*db, "workers", "list", "-n", "2", "--json", cwd=tmp_path)
    assert [w["id"] for w in json.loads(shown)] == ["w1", "w2"]
    assert "1 more live worker(s) not shown: --limit 3 shows them all" in note

    table, _ = _ok(*db, "workers", "list", "--limit", "1", cwd=tmp_path)
    assert "1 live worker(s)" in table
    assert table.rstrip().splitlines()[-1] == (
        "2 more live worker(s) not shown: --limit 3 shows them all"
    )
    every, note = _ok(*db, "workers", "list", "-n", "3", "--json", cwd=tmp_path)
    assert len(json.loads(every)) == 3 and note == ""


def test_tasks_stats_shows_the_first_limit_task_names(three_of_each: str, tmp_path: Path) -> None:
    db = ("--db", three_of_each)
    shown, note = _ok(*db, "tasks", "stats", "-n", "2", "--json", cwd=tmp_path)
    assert [(q["task_name"], q["queued"]) for q in json.loads(shown)] == [
        ("resize", 1), ("upload", 1)
    ]  # fmt: skip
    assert "1 more task name(s) not shown: --limit 3 shows them all" in note

    table, _ = _ok(*db, "tasks", "stats", "--limit", "2", cwd=tmp_path)
    assert "zip" not in table
    assert table.rstrip().splitlines()[-1] == (
        "1 more task name(s) not shown: --limit 3 shows them all"
    )
    whole, _ = _ok(*db, "tasks", "stats", cwd=tmp_path)
    assert "zip" in whole and "not shown" not in whole


@pytest.mark.parametrize(
    "command",
    [("schedules", "list"), ("workers", "list"), ("tasks", "stats")],
    ids=lambda command: " ".join(command),
)
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_limit_below_one_is_refused(command: tuple[str, ...], limit: str, tmp_path: Path) -> None:
    done = cereal(
        "--db", f"sqlite:///{tmp_path / 'x.db'}", *command, "--limit", limit, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.replace("│", " ").split())  # unwrap the error box
    assert "Invalid value for '--limit' / '-n'" in said
    assert "greater than or equal to 1" in said
