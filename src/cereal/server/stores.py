"""The per-domain stores: one isolated store per domain name, behind one server.

Every call names its domain; names (instances, tasks, schedules, history)
are isolated per domain because each domain has its own store:

- SQLite: the given file serves the ``default`` domain; domain ``NAME`` gets
  ``<stem>.NAME<suffix>`` next to it (``cereal.db`` -> ``cereal.billing.db``).
- PostgreSQL: the given database's own search path serves ``default``;
  domain ``NAME`` gets the schema ``cereal_NAME`` (created on first use and
  migrated), selected with the libpq ``options=-c search_path=...`` setting.
"""

from __future__ import annotations

import abc
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cereal.drivers.base import Driver
from cereal.wire.domain_names import DEFAULT_DOMAIN, DOMAIN_PATTERN

_SCHEMA_PREFIX = "cereal_"


class DomainStores(abc.ABC):
    """Builds the backing driver of each domain from the served store's URL."""

    @abc.abstractmethod
    async def build(self, domain: str) -> Driver:
        """A new (not yet initialised) driver for ``domain``, its storage prepared."""

    @abc.abstractmethod
    async def existing(self) -> list[str]:
        """The domains that already have a store (their schedules should run at once)."""


class SQLiteDomainStores(DomainStores):
    """One SQLite file per domain, next to the given file."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def path_of(self, domain: str) -> Path:
        """The file of ``domain``."""
        if domain == DEFAULT_DOMAIN:
            return self._path
        return self._path.with_name(f"{self._path.stem}.{domain}{self._path.suffix}")

    async def build(self, domain: str) -> Driver:
        """A SQLite driver on the domain's file (created on open)."""
        from cereal.drivers.sqlite import SQLiteDriver

        return SQLiteDriver(str(self.path_of(domain)))

    async def existing(self) -> list[str]:
        """Domains whose file exists."""
        found = [DEFAULT_DOMAIN]
        prefix, suffix = f"{self._path.stem}.", self._path.suffix
        if self._path.parent.is_dir():
            for entry in self._path.parent.iterdir():
                name = entry.name
                if name.startswith(prefix) and name.endswith(suffix) and entry.is_file():
                    domain = name[len(prefix) : len(name) - len(suffix)]
                    if DOMAIN_PATTERN.fullmatch(domain) and domain != DEFAULT_DOMAIN:
                        found.append(domain)
        return sorted(found)


def schema_of(domain: str) -> str:
    """The PostgreSQL schema of a non-default domain."""
    return _SCHEMA_PREFIX + domain


def with_search_path(url: str, schema: str) -> str:
    """``url`` with the libpq ``options`` setting ``search_path`` to ``schema`` (only).

    The setting has no space in it (``--search_path=...``): the PostgreSQL driver
    re-encodes the URL's query, which would turn a space into a literal ``+``.
    """
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    setting = f'--search_path="{schema}"'
    return urlunsplit(parts._replace(query=urlencode([*kept, ("options", setting)])))


class PostgresDomainStores(DomainStores):
    """One schema per domain in the given database."""

    def __init__(self, url: str) -> None:
        if urlsplit(url).scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError("domains on PostgreSQL need a postgresql:// URL")
        if any(k == "options" for k, _ in parse_qsl(urlsplit(url).query)):
            raise ValueError("cereal serve sets the libpq 'options' itself; remove it from --db")
        self._url = url

    def _conninfo(self) -> str:
        from cereal.drivers.postgres._base import split_url_options

        return split_url_options(self._url)[0]

    async def build(self, domain: str) -> Driver:
        """A PostgreSQL driver whose search path is the domain's schema (created if missing)."""
        from cereal.drivers.postgres import PostgresDriver

        if domain == DEFAULT_DOMAIN:
            return PostgresDriver(self._url)
        import psycopg
        from psycopg import sql

        from cereal.drivers.postgres._db import translate

        schema = schema_of(domain)
        with translate(f"creating schema {schema}"):
            async with await psycopg.AsyncConnection.connect(
                self._conninfo(), autocommit=True
            ) as conn:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
        return PostgresDriver(with_search_path(self._url, schema))

    async def existing(self) -> list[str]:
        """The default domain and every domain whose schema exists."""
        import psycopg

        from cereal.drivers.postgres._db import translate

        with translate("listing domain schemas"):
            async with await psycopg.AsyncConnection.connect(
                self._conninfo(), autocommit=True
            ) as conn:
                cursor = await conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                    (_SCHEMA_PREFIX,),
                )
                rows = await cursor.fetchall()
        found = {DEFAULT_DOMAIN}
        for (schema,) in rows:
            domain = str(schema)[len(_SCHEMA_PREFIX) :]
            if DOMAIN_PATTERN.fullmatch(domain):
                found.add(domain)
        return sorted(found)


def stores_for(url: str) -> DomainStores:
    """The per-domain stores of a served database URL.

    Raises:
        ValueError: the URL is not a SQLite or PostgreSQL URL.
    """
    from cereal.drivers import sqlite_path_from_url

    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        if "?" in url:
            raise ValueError("cereal serve takes a plain sqlite:///path.db URL (no options)")
        return SQLiteDomainStores(sqlite_path_from_url(url))
    if scheme in ("postgresql", "postgres"):
        return PostgresDomainStores(url)
    raise ValueError(
        f"cereal serve needs a durable store (sqlite:///path.db or postgresql://...), not {url!r}"
    )
