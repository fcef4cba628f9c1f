"""Which cereal store a PostgreSQL session reaches.

A caller's own connection (transactional enqueue) must reach the driver's
store, or the instance would be written elsewhere. Two sessions reach the
same store when they agree on the cluster's system identifier, the oid of
their database and the oid of the ``cereal_workflow_instances`` table their
search paths find. All three come from the server, so a proxy (PgBouncer), a
socket or another host name for the same server does not matter, while
another server, another database or another schema (a gRPC server's domains)
does. A role that may not call ``pg_control_system()`` is matched on the two
oids only (a WARNING says so once per driver).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import LiteralString

import psycopg

from cereal import errors
from cereal.drivers.postgres._db import QUERIES, Conn, Row, fetch_one

logger = logging.getLogger(__name__)

# the cluster's identifier is out of reach: hosting providers may revoke the function
_NO_CLUSTER_ERRORS = (
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.FeatureNotSupported,
)


@dataclass(frozen=True)
class StoreIdentity:
    """Where one session's cereal tables are (a row of a ``store_identity`` query)."""

    system_identifier: int | None
    """The cluster's, from ``pg_control_system()``; None when the driver's role may not read it."""
    database_oid: int
    table_oid: int | None
    """``cereal_workflow_instances`` as the search path finds it; None: not found."""
    database_name: str
    schema_name: str | None

    @classmethod
    def from_row(cls, row: Row | None) -> StoreIdentity:
        """The identity in a row of a ``store_identity`` query."""
        if row is None:
            raise errors.DriverError("PostgreSQL: the store identity query returned no row")
        system_identifier = row["system_identifier"]
        return cls(
            system_identifier=None if system_identifier is None else int(system_identifier),
            database_oid=int(row["database_oid"]),
            table_oid=None if row["table_oid"] is None else int(row["table_oid"]),
            database_name=str(row["database_name"]),
            schema_name=row["schema_name"],
        )

    @property
    def query(self) -> LiteralString:
        """The query that reads another session's identity comparably to this one."""
        if self.system_identifier is None:
            return QUERIES["store_identity_in_cluster"]
        return QUERIES["store_identity"]

    def same_store(self, other: StoreIdentity) -> bool:
        """True when both reach the same cereal tables of the same database and server."""
        return (
            self.table_oid is not None
            and self.system_identifier == other.system_identifier
            and self.database_oid == other.database_oid
            and self.table_oid == other.table_oid
        )

    def describe(self) -> str:
        """Where this session's cereal tables are, for a message."""
        where = f"database {self.database_name!r}"
        if self.table_oid is None:
            return f"{where} (no cereal tables on its search path)"
        return f"{where}, schema {self.schema_name!r}"


async def read_own(conn: Conn) -> StoreIdentity:
    """The identity of the store ``conn`` (one of the driver's own connections) reaches.

    Raises:
        psycopg.Error: the query failed for another reason than the cluster's
            identifier being out of reach.
    """
    try:
        return StoreIdentity.from_row(await fetch_one(conn, "store_identity", {}))
    except _NO_CLUSTER_ERRORS as exc:
        logger.warning(
            "cannot read the PostgreSQL cluster's system identifier (%s): a connection given "
            "to enqueue_workflow(connection=) is checked on its database and schema only",
            exc,
        )
        return StoreIdentity.from_row(await fetch_one(conn, "store_identity_in_cluster", {}))


def refuse_other_store(here: StoreIdentity, expected: StoreIdentity) -> None:
    """Raise unless ``here`` (the caller's session) reaches the driver's store ``expected``.

    Raises:
        ValueError: it reaches another server, database or schema.
    """
    if here.same_store(expected):
        return
    server = (
        ""
        if here.system_identifier == expected.system_identifier
        else " on another PostgreSQL server"
    )
    raise ValueError(
        f"the psycopg connection reaches {here.describe()}{server}, not the driver's store "
        f"({expected.describe()}); nothing was written: enqueue on a connection to the "
        "driver's database (and schema)"
    )
