"""Command-line conveniences from a new user's pass: where options go, input, paging, output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system._cereal_process import cereal, one_error_line


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'options.db'}"


def test_global_options_work_after_the_command_too(tmp_path: Path, db: str) -> None:
    cereal("workflows", "enqueue", "w", "one", "--db", db, cwd=tmp_path)
    cereal("workflows", "enqueue", f"--db={db}", "w", "two", cwd=tmp_path)

    listed = cereal("workflows", "list", "--json", "--db", db, "-v", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [item["instance_name"] for item in json.loads(listed.stdout)] == [
        "two",
        "one",
    ]  # newest first
    assert not (tmp_path / "cereal.db").exists()  # the default database was never used

    # after "--" everything is positional: "--db" is an instance name there
    dashed = cereal("--db", db, "workflows", "enqueue", "w", "--", "--db", cwd=tmp_path)
    assert dashed.returncode == 0, dashed.stderr
    shown = cereal("workflows", "show", "--json", "--db", db, "--", "w", "--db", cwd=tmp_path)
    assert json.loads(shown.stdout)["instance_name"] == "--db"


def test_version(tmp_path: Path) -> None:
    done = cereal("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert re.fullmatch(r"cereal \d+\.\d+\.\d+\S*\n", done.stdout)


def test_help_shows_no_type_placeholders(tmp_path: Path) -> None:
    for command in ([], ["workflows", "list"], ["schedules", "create"], ["demo"], ["worker"]):
        done = cereal(*command, "--help", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "<bool>" not in done.stdout and "<str>" not in done.stdout, done.stdout
        assert "<int>" not in done.stdout and "<float>" not in done.stdout, done.stdout
    assert "JSON" in cereal("workflows", "enqueue", "--help", cwd=tmp_path).stdout


def test_parameters_from_a_file_and_from_stdin(tmp_path: Path, db: str) -> None:
    (tmp_path / "params.json").write_text('{"names": ["ada", "alan"]}\n')
    from_file = cereal(
        "--db", db, "workflows", "enqueue", "w", "f", "-p", "@params.json", cwd=tmp_path
    )
    assert from_file.returncode == 0, from_file.stderr
    from_stdin = cereal(
        "--db", db, "workflows", "enqueue", "w", "s", "--parameters", "-",
        cwd=tmp_path, stdin='[1, "two"]',
    )  # fmt: skip
    assert from_stdin.returncode == 0, from_stdin.stderr
    create = cereal(
        "--db", db, "schedules", "create", "w", "nightly", "--rrule", "FREQ=DAILY",
        "-p", "@params.json", cwd=tmp_path,
    )  # fmt: skip
    assert create.returncode == 0, create.stderr

    def shown(*args: str) -> object:
        return json.loads(cereal("--db", db, *args, "--json", cwd=tmp_path).stdout)["parameters"]

    assert shown("workflows", "show", "w", "f") == {"names": ["ada", "alan"]}
    assert shown("workflows", "show", "w", "s") == [1, "two"]
    assert shown("schedules", "show", "w", "nightly") == {"names": ["ada", "alan"]}


def test_parameters_file_errors_are_one_line_and_store_nothing(tmp_path: Path, db: str) -> None:
    missing = cereal("--db", db, "workflows", "enqueue", "w", "x", "-p", "@nope.json", cwd=tmp_path)
    assert "--parameters @nope.json: cannot read the file" in one_error_line(missing)
    (tmp_path / "bad.json").write_text("{" + '"k": 1,' * 100_000)
    bad = cereal("--db", db, "workflows", "enqueue", "w", "x", "-p", "@bad.json", cwd=tmp_path)
    line = one_error_line(bad)
    assert "--parameters is not valid JSON" in line
    assert len(line) < 300  # the message quotes only the start of a large file
    listed = cereal("--db", db, "workflows", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []


def test_list_pages_with_limit_and_offset(tmp_path: Path, db: str) -> None:
    for number in range(5):
        cereal("--db", db, "workflows", "enqueue", "w", f"i{number}", cwd=tmp_path)

    def page(*args: str) -> list[str]:
        done = cereal("--db", db, "workflows", "list", "--json", *args, cwd=tmp_path)
        return [item["instance_name"] for item in json.loads(done.stdout)]

    # newest first by default: the last enqueued started last
    assert page() == ["i4", "i3", "i2", "i1", "i0"]
    assert page("--limit", "2") == ["i4", "i3"]
    assert page("--limit", "2", "--offset", "2") == ["i2", "i1"]
    assert page("--offset", "4") == ["i0"]
    assert page("--by-name", "--limit", "2", "--offset", "2") == ["i2", "i3"]

    table = cereal("--db", db, "workflows", "list", "--limit", "2", "--offset", "1", cwd=tmp_path)
    assert "2 workflow instance(s) (2-3 newest first)" in table.stdout
    assert "started" in table.stdout
    by_name = cereal(
        "--db", db, "workflows", "list", "--by-name", "--limit", "2", "--offset", "1", cwd=tmp_path
    )
    assert "2 workflow instance(s) (2-3 in name order)" in by_name.stdout
    assert "more workflow instances exist after 3: --offset 3 shows the next page" in table.stdout
    last = cereal("--db", db, "workflows", "list", "--offset", "3", cwd=tmp_path)
    assert "more workflow instances" not in last.stdout
    bad = cereal("--db", db, "workflows", "list", "--limit", "0", cwd=tmp_path)
    assert bad.returncode == 2


def test_list_shows_at_most_100_by_default(tmp_path: Path, db: str) -> None:
    names = [f"i{number:03}" for number in range(101)]
    script = (
        "import asyncio, cereal\n"
        "async def main():\n"
        f"    m = cereal.Manager(cereal.open_driver({db!r}))\n"
        f"    for name in {names!r}:\n"
        "        await m.enqueue_workflow('w', name, None)\n"
        "    await m.stop()\n"
        "asyncio.run(main())\n"
    )
    (tmp_path / "fill.py").write_text(script)
    subprocess.run([sys.executable, "fill.py"], cwd=tmp_path, check=True, timeout=90)
    table = cereal("--db", db, "workflows", "list", "--by-name", cwd=tmp_path)
    assert "100 workflow instance(s) (1-100 in name order)" in table.stdout
    assert "i099" in table.stdout and "i100" not in table.stdout
    newest = cereal("--db", db, "workflows", "list", cwd=tmp_path)
    assert "100 workflow instance(s) (1-100 newest first)" in newest.stdout
    assert "i100" in newest.stdout and "i000" not in newest.stdout
    assert "--offset 100 shows the next page" in table.stdout


def test_show_previews_a_large_value_unless_full(tmp_path: Path, db: str) -> None:
    big = {"rows": [f"row {number:06}" for number in range(100_000)]}
    (tmp_path / "big.json").write_text(json.dumps(big))
    cereal("--db", db, "workflows", "enqueue", "w", "big", "-p", "@big.json", cwd=tmp_path)

    preview = cereal("--db", db, "workflows", "show", "w", "big", cwd=tmp_path)
    assert preview.returncode == 0, preview.stderr
    assert len(preview.stdout.splitlines()) < 60
    assert '"row 000000"' in preview.stdout and '"row 099999"' not in preview.stdout
    assert "--full (or --json) shows it all" in preview.stdout

    full = cereal("--db", db, "workflows", "show", "w", "big", "--full", cwd=tmp_path)
    assert '"row 099999"' in full.stdout
    as_json = cereal("--db", db, "workflows", "show", "w", "big", "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout)["parameters"] == big


def test_piped_tables_do_not_wrap(tmp_path: Path, db: str) -> None:
    long_name = "an-instance-name-" + "x" * 150
    cereal("--db", db, "workflows", "enqueue", "a-long-workflow-name", long_name, cwd=tmp_path)

    listed = cereal("--db", db, "workflows", "list", cwd=tmp_path)  # stdout is a pipe
    rows = [line for line in listed.stdout.splitlines() if "a-long-workflow-name" in line]
    assert len(rows) == 1 and long_name in rows[0], listed.stdout
    shown = cereal("--db", db, "workflows", "show", "a-long-workflow-name", long_name, cwd=tmp_path)
    assert any(long_name in line for line in shown.stdout.splitlines()), shown.stdout


def test_schedules_accept_cron_and_show_the_stored_rrule(tmp_path: Path, db: str) -> None:
    created = cereal(
        "--db", db, "schedules", "create", "report", "nightly", "--rrule", "0 3 * * *",
        cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    rule = "FREQ=DAILY;BYHOUR=3;BYMINUTE=0;BYSECOND=0"
    assert f"{rule} (from '0 3 * * *')" in created.stdout
    shown = cereal("--db", db, "schedules", "show", "report", "nightly", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["recurrence"] == rule

    bad = cereal(
        "--db", db, "schedules", "update", "report", "nightly", "--rrule", "0 3 1 * MON",
        cwd=tmp_path,
    )  # fmt: skip
    assert "invalid cron expression '0 3 1 * MON'" in one_error_line(bad)
    neither = cereal(
        "--db", db, "schedules", "create", "report", "x", "--rrule", "nightly", cwd=tmp_path
    )
    assert "nor a 5-field cron expression" in one_error_line(neither)
