"""Which database a driver or URL names: a printable label and an identity to compare.

``cereal worker`` runs a Manager that brings its own driver; these say which
database that is (passwords never shown) and whether ``--db`` names the same one.
"""

from __future__ import annotations

import os
from typing import Any

from cereal.drivers import Driver, open_driver
from cereal.drivers.memory import MemoryDriver
from cereal.drivers.sqlite import SQLiteDriver

_POSTGRES_KEYS = ("user", "host", "port", "dbname")


def _postgres_parts(driver: Driver) -> dict[str, str] | None:
    """The connection keys of a PostgreSQL driver (no password), or None for other drivers."""
    dsn = getattr(driver, "dsn", None)
    if type(driver).__name__ != "PostgresDriver" or not isinstance(dsn, str):
        return None
    # psycopg is installed: this driver could not exist otherwise
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(dsn)
    return {key: str(given[key]) for key in _POSTGRES_KEYS if given.get(key) is not None}


def label(driver: Driver) -> str:
    """A URL-like name of the driver's database, with no password in it."""
    if isinstance(driver, SQLiteDriver):
        return f"sqlite:///{os.path.abspath(driver.path)}"
    if isinstance(driver, MemoryDriver):
        return "memory:// (this process only)"
    parts = _postgres_parts(driver)
    if parts is not None:
        user = f"{parts['user']}@" if "user" in parts else ""
        port = f":{parts['port']}" if "port" in parts else ""
        return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"
    return type(driver).__name__


def identity(driver: Driver) -> tuple[Any, ...]:
    """Equal for two drivers on the same database (each memory driver is its own)."""
    if isinstance(driver, SQLiteDriver):
        return ("sqlite", os.path.realpath(driver.path))
    parts = _postgres_parts(driver)
    if parts is not None:
        return ("postgresql", tuple(sorted(parts.items())))
    return ("object", id(driver))


def url_disagreement(url: str, driver: Driver) -> str | None:
    """Why ``url`` does not name ``driver``'s database, or None when it does."""
    try:
        named = open_driver(url)  # builds the driver only: no I/O
    except (ValueError, ImportError) as exc:
        return f"it is not usable here ({exc})"
    if identity(named) == identity(driver):
        return None
    return f"it names {label(named)}"
