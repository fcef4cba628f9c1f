"""``cereal workflows enqueue --idempotency-key`` through the real command, on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

from tests.system._cereal_process import cereal, one_error_line


def test_a_repeated_key_reports_the_run_it_started_and_starts_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    first = cereal(
        "--db", db, "workflows", "enqueue", "wf", "a", "--idempotency-key", "r1", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "ok enqueued wf/a"

    again = cereal(
        "--db", db, "workflows", "enqueue", "wf", "b", "--idempotency-key", "r1", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "ok not enqueued: key 'r1' already started wf/a"

    as_json = cereal(
        "--db",
        db,
        "workflows",
        "enqueue",
        "wf",
        "c",
        "--idempotency-key",
        "r1",
        "--json",
        cwd=tmp_path,
    )
    assert json.loads(as_json.stdout) == {
        "workflow_name": "wf",
        "instance_name": "a",
        "created": False,
    }
    fresh = cereal("--db", db, "workflows", "enqueue", "wf", "d", "--json", cwd=tmp_path)
    assert json.loads(fresh.stdout) == {
        "workflow_name": "wf",
        "instance_name": "d",
        "created": True,
    }

    listed = cereal("--db", db, "workflows", "list", "--json", cwd=tmp_path)
    assert sorted(run["instance_name"] for run in json.loads(listed.stdout)) == ["a", "d"]


def test_a_bad_key_is_one_error_line_and_nothing_is_stored(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    bad = cereal(
        "--db", db, "workflows", "enqueue", "wf", "a", "--idempotency-key", "", cwd=tmp_path
    )
    assert one_error_line(bad) == "error: idempotency key must not be empty"
    listed = cereal("--db", db, "workflows", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []
