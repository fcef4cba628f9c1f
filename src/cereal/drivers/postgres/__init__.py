"""The PostgreSQL driver (``postgresql://`` URLs); needs the ``postgres`` extra."""

from __future__ import annotations

from cereal.drivers.postgres.driver import PostgresDriver

__all__ = ["PostgresDriver"]
