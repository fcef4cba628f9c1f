"""The SQLite driver: ``sqlite:///path.db``, the embedded default.

Durable across restarts; several processes on one host may share one file.
"""

from __future__ import annotations

from cereal.drivers.sqlite.driver import SQLiteDriver

__all__ = ["SQLiteDriver"]
