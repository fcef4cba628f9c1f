"""SQL kept as package data: named queries and numbered migrations.

A queries file holds blocks that each start with a marker line
``-- name: some_query`` followed by the SQL. Migrations are files named
``NNNN_short_description.sql`` in a ``migrations`` folder; their checksum is
the SHA-256 of the file's bytes, so an edited applied migration is detected.
The text is package data that we wrote, never user input, hence
``LiteralString``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import LiteralString

_MARKER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered schema step."""

    version: int
    name: str
    sql: LiteralString
    checksum: str


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, LiteralString]:
    """Read the named query blocks of ``filename`` in ``package``.

    Raises:
        ValueError: a name is used twice or a block is empty.
    """
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    queries: dict[str, LiteralString] = {}
    matches = list(_MARKER.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in queries:
            raise ValueError(f"{package}/{filename}: query {name!r} is defined twice")
        if not body:
            raise ValueError(f"{package}/{filename}: query {name!r} is empty")
        queries[name] = body  # mypy treats LiteralString as str; the text is ours
    return queries


def load_migrations(package: str, folder: str = "migrations") -> list[Migration]:
    """The migrations of ``package``, ordered by version.

    Raises:
        ValueError: a file is misnamed, or versions are not 1, 2, 3, ... without gaps.
    """
    found: list[Migration] = []
    for entry in resources.files(package).joinpath(folder).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} is not named NNNN_description.sql")
        raw = entry.read_bytes()
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=raw.decode("utf-8"),
                checksum=hashlib.sha256(raw).hexdigest(),
            )
        )
    found.sort(key=lambda migration: migration.version)
    expected = list(range(1, len(found) + 1))
    if [migration.version for migration in found] != expected:
        raise ValueError(f"{package} migrations must be numbered 0001.. without gaps")
    return found
