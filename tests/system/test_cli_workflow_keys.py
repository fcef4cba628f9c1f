"""``cereal workflows enqueue --concurrency-key``, and ``workflows show`` of it, on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

from tests.system._cereal_process import cereal, one_error_line


def test_a_run_over_its_keys_limit_is_shown_waiting(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    keyed = ("--concurrency-key", "[/] customer 7", "--concurrency-limit", "1")
    for name in ("a", "b"):
        done = cereal("--db", db, "workflows", "enqueue", "wf", name, *keyed, cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    def shown_json(name: str) -> dict[str, object]:
        done = cereal("--db", db, "workflows", "show", "wf", name, "--json", cwd=tmp_path)
        found: dict[str, object] = json.loads(done.stdout)
        return found

    shown = shown_json("b")
    assert (shown["concurrency_key"], shown["concurrency_limit"]) == ("[/] customer 7", 1)
    assert (shown["waiting_for_key"], shown["status"]) == (True, "starting")
    assert shown_json("a")["waiting_for_key"] is False

    table = cereal("--db", db, "workflows", "show", "wf", "b", cwd=tmp_path).stdout
    assert "[/] customer 7 (at most 1; waiting for a place)" in table


def test_a_key_without_its_limit_is_one_error_line_and_nothing_is_stored(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    bad = cereal(
        "--db", db, "workflows", "enqueue", "wf", "a", "--concurrency-key", "k", cwd=tmp_path
    )
    assert "concurrency_limit" in one_error_line(bad)
    zero = cereal(
        "--db",
        db,
        "workflows",
        "enqueue",
        "wf",
        "a",
        "--concurrency-key",
        "k",
        "--concurrency-limit",
        "0",
        cwd=tmp_path,
    )
    assert "concurrency_limit must be from 1 to 10000" in one_error_line(zero)
    listed = cereal("--db", db, "workflows", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []
