"""The PostgreSQL driver's SQL files and URL options (no server needed)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from cereal.drivers import open_driver
from cereal.drivers.postgres import PostgresDriver
from cereal.drivers.postgres._base import split_url_options
from cereal.drivers.postgres._db import QUERIES

PACKAGE = Path(__file__).parents[2] / "src" / "cereal" / "drivers" / "postgres"
# a query is used by name in a fetch/execute call, through QUERIES[...], or as
# the first item of a (name, params) statement tuple given to the group commit
CALL = re.compile(
    r"""(?:(?:fetch_one|fetch_all|execute)\(\s*\w+,\s*|QUERIES\[)"([a-z_]+)"|"""
    r"""\(\s*"([a-z_]+)",\s*(?:params|self\._claim\(\))\)"""
)


def used_names() -> set[str]:
    return {
        call or statement
        for path in PACKAGE.glob("*.py")
        for call, statement in CALL.findall(path.read_text())
    }


def test_every_query_is_used_and_every_used_name_exists() -> None:
    assert used_names() == set(QUERIES)


def test_queries_bind_every_value() -> None:
    for name, text in QUERIES.items():
        assert "{" not in text and "format(" not in text, name
        # every placeholder is a named bind parameter
        assert re.findall(r"%(?!\()", text.replace("%%", "")) == [], name


def test_url_options_are_taken_and_the_rest_passed_to_libpq() -> None:
    url, options = split_url_options(
        "postgresql://u:secret@h:5433/db?sslmode=disable&max_size=4&notify=false&min_size=0"
    )
    assert url == "postgresql://u:secret@h:5433/db?sslmode=disable"
    assert options == {"max_size": 4, "notify": False, "min_size": 0}
    assert split_url_options("host=h dbname=db") == ("host=h dbname=db", {})
    with pytest.raises(ValueError, match="max_size"):
        split_url_options("postgresql://h/db?max_size=many")


def test_open_driver_builds_it_without_io_and_hides_the_password() -> None:
    driver = open_driver("postgresql://u:secret@h/db?max_size=3")
    assert isinstance(driver, PostgresDriver)
    assert "secret" not in repr(driver)
    assert not driver.is_open
    with pytest.raises(ValueError):
        PostgresDriver("postgresql://h/db", min_size=5, max_size=2)


def test_pooler_options_are_taken_from_the_url() -> None:
    direct = "postgresql://u@db-host:5432/db?sslmode=require"
    url, options = split_url_options(
        f"postgresql://u@bouncer:6432/db?prepare_threshold=none&listen_url={quote(direct, safe='')}"
    )
    assert url == "postgresql://u@bouncer:6432/db"
    assert options == {"prepare_threshold": None, "listen_url": direct}
    assert split_url_options("postgresql://h/db?prepare_threshold=0")[1] == {"prepare_threshold": 0}
    with pytest.raises(ValueError, match="prepare_threshold"):
        split_url_options("postgresql://h/db?prepare_threshold=-1")
    with pytest.raises(ValueError, match="listen_url"):
        split_url_options(f"postgresql://h/db?listen_url={quote('postgresql://h/db?max_size=2')}")
    with pytest.raises(ValueError, match="listen_url"):
        split_url_options("postgresql://h/db?listen_url=")


def test_pooler_keywords_win_over_the_url_and_default_to_psycopgs_behaviour() -> None:
    plain = PostgresDriver("postgresql://u@h/db")
    assert plain._prepare_threshold == 5  # psycopg's default: prepare on the 5th execution
    assert plain._listen_conninfo == "postgresql://u@h/db"

    from_url = PostgresDriver(
        "postgresql://u@h/db?prepare_threshold=none&listen_url=postgresql%3A%2F%2Fu%40direct%2Fdb"
    )
    assert from_url._prepare_threshold is None
    assert from_url._listen_conninfo == "postgresql://u@direct/db"
    assert from_url.dsn == "postgresql://u@h/db"

    keywords = PostgresDriver(
        "postgresql://u@h/db?prepare_threshold=none&listen_url=postgresql%3A%2F%2Fu%40x%2Fdb",
        prepare_threshold=3,
        listen_url="postgresql://u@other/db",
    )
    assert keywords._prepare_threshold == 3
    assert keywords._listen_conninfo == "postgresql://u@other/db"
    assert PostgresDriver("postgresql://u@h/db", prepare_threshold=None)._prepare_threshold is None
    with pytest.raises(ValueError, match="prepare_threshold"):
        PostgresDriver("postgresql://u@h/db", prepare_threshold=-2)
    with pytest.raises(ValueError, match="listen_url"):
        PostgresDriver("postgresql://u@h/db", listen_url="")
