"""A canonical, readable dump of a SQLite store's schema, read from ``sqlite_master``.

Objects are grouped by table (tables by name; each table, then its indexes,
then its triggers, each by name), then views. SQLite keeps every object's
``CREATE`` text much as it was written, and ``ALTER TABLE ... ADD COLUMN``
splices new columns onto the end of it, so the text is normalised: a table
gets one column or constraint per line (comments dropped, runs of whitespace
outside quotes squeezed to one space), an index becomes one line, and trigger
and view bodies keep their lines without trailing spaces. SQLite's own
objects (``sqlite_sequence``, the automatic indexes of ``UNIQUE`` and
``PRIMARY KEY``) are implied by the rest and left out, so the dump is also
a script that builds the same schema in an empty database.
"""

from __future__ import annotations

import sqlite3

_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}
_CONSTRAINT_WORDS = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})
_OBJECTS = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master"
    " WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
_TABLE_EXISTS = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cereal_schema_migrations'"
)
_LATEST = "SELECT version, name FROM cereal_schema_migrations ORDER BY version DESC LIMIT 1"
_KIND_ORDER = {"table": 0, "index": 1, "trigger": 2}


def dump_schema(conn: sqlite3.Connection) -> str:
    """The schema of the database on ``conn``, as normalised SQL text ending in a newline."""
    objects = [
        (str(kind), str(name), str(table), str(sql))
        for kind, name, table, sql in conn.execute(_OBJECTS).fetchall()
    ]
    views = sorted((name, sql) for kind, name, _, sql in objects if kind == "view")
    grouped = sorted(
        (table, _KIND_ORDER[kind], name, kind, sql)
        for kind, name, table, sql in objects
        if kind in _KIND_ORDER
    )
    statements = [_normalise(kind, sql) for *_, kind, sql in grouped]
    statements += [_normalise_lines(sql) for _, sql in views]
    return "\n\n".join([_latest_migration(conn), *(s + ";" for s in statements)]) + "\n"


def _latest_migration(conn: sqlite3.Connection) -> str:
    if conn.execute(_TABLE_EXISTS).fetchone() is None:
        return "-- No migration applied."
    row = conn.execute(_LATEST).fetchone()
    if row is None:
        return "-- No migration applied."
    return f"-- Latest migration: {int(row[0]):04d}_{row[1]}"


def _normalise(kind: str, sql: str) -> str:
    if kind == "table":
        return _table(_squeeze(sql))
    if kind == "index":
        return _squeeze(sql)
    return _normalise_lines(sql)


def _normalise_lines(sql: str) -> str:
    """A body kept as written: lines without trailing spaces, no blank edges."""
    return "\n".join(line.rstrip() for line in sql.strip().splitlines())


def _quoted_end(sql: str, start: int) -> int:
    """The index just past the quoted name or string that opens at ``start``."""
    close = _QUOTES[sql[start]]
    index = start + 1
    while index < len(sql):
        if sql[index] == close:
            # a doubled quote is an escaped one (brackets have no escape)
            if close != "]" and sql.startswith(close * 2, index):
                index += 2
                continue
            return index + 1
        index += 1
    return len(sql)


def _squeeze(sql: str) -> str:
    """``sql`` on one line: comments dropped, whitespace outside quotes squeezed to a space."""
    out: list[str] = []
    space = False
    index = 0
    while index < len(sql):
        char = sql[index]
        if sql.startswith("--", index):
            newline = sql.find("\n", index)
            index, space = (len(sql) if newline < 0 else newline), True
            continue
        if sql.startswith("/*", index):
            end = sql.find("*/", index + 2)
            index, space = (len(sql) if end < 0 else end + 2), True
            continue
        if char.isspace():
            index, space = index + 1, True
            continue
        end = _quoted_end(sql, index) if char in _QUOTES else index + 1
        if space and out:
            out.append(" ")
        out.append(sql[index:end])
        space = False
        index = end
    return "".join(out)


def _table(sql: str) -> str:
    """A squeezed ``CREATE TABLE`` with one column or table constraint per line."""
    opening, parts, closing = _split_definitions(sql)
    if opening < 0:
        return sql
    items = [part.strip() for part in parts]
    columns = [item for item in items if not _is_constraint(item)]
    width = max((len(_first_word(item)) for item in columns), default=0)
    lines = []
    for item in items:
        if _is_constraint(item):
            lines.append(item)
            continue
        name = _first_word(item)
        rest = item[len(name) :].strip()
        lines.append(f"{name.ljust(width)} {rest}".rstrip())
    body = ",\n".join("    " + line for line in lines)
    return f"{sql[:opening].rstrip()} (\n{body}\n){sql[closing + 1 :]}"


def _split_definitions(sql: str) -> tuple[int, list[str], int]:
    """The outer ``(``, the comma-separated parts inside it and the matching ``)``."""
    depth = 0
    opening = -1
    start = 0
    parts: list[str] = []
    index = 0
    while index < len(sql):
        char = sql[index]
        if char in _QUOTES:
            index = _quoted_end(sql, index)
            continue
        if char == "(":
            depth += 1
            if depth == 1:
                opening, start = index, index + 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                parts.append(sql[start:index])
                return opening, parts, index
        elif char == "," and depth == 1:
            parts.append(sql[start:index])
            start = index + 1
        index += 1
    return -1, [], -1


def _first_word(item: str) -> str:
    if item[:1] in _QUOTES:
        return item[: _quoted_end(item, 0)]
    return item.split(" ", 1)[0]


def _is_constraint(item: str) -> bool:
    return _first_word(item).upper() in _CONSTRAINT_WORDS
