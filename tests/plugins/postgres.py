"""PostgreSQL for tests: owned by the PostgreSQL driver work."""

from __future__ import annotations
