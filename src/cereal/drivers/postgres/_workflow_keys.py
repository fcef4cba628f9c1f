"""PostgreSQL: starting the runs that wait for a workflow concurrency key.

A run's end frees its key's place in the transaction that ends it: a
decision's inside ``cereal_apply_decisions``, a kill's, a schedule's
replacement's and a failed run's requeue's through :func:`start_waiting_runs`
(migration 0026 has the function, which locks the keys). The sweep starts
those a process of an earlier release left waiting.
"""

from __future__ import annotations

from cereal.drivers._workflow_store import WAITING_KEYS_PER_SWEEP
from cereal.drivers.postgres._db import Conn, fetch_all


async def start_waiting_runs(conn: Conn, keys: list[str]) -> list[str]:
    """Start the waiting runs of ``keys`` that fit, in ``conn``'s transaction; their workflows."""
    if not keys:
        return []
    rows = await fetch_all(conn, "start_waiting_runs", {"keys": keys})
    return [str(row["workflow_name"]) for row in rows]


class WaitingKeysCursor:
    """Where a process's sweeps go on through the keys with waiting runs (in key order)."""

    def __init__(self) -> None:
        self.after = ""

    async def start_runs_left_waiting(self, conn: Conn) -> list[str]:
        """Sweep: start the waiting runs of the next keys that have room; their workflows.

        Each sweep looks at up to :data:`WAITING_KEYS_PER_SWEEP` keys after the
        last one it looked at, wrapping round, so every key has its turn
        however many are full.
        """
        params = {"after": self.after, "limit": WAITING_KEYS_PER_SWEEP}
        async with conn.transaction():
            rows = await fetch_all(conn, "keys_with_waiting_runs", params)
            keys = [str(row["concurrency_key"]) for row in rows]
            started = await start_waiting_runs(conn, keys)
        self.after = keys[-1] if len(keys) == WAITING_KEYS_PER_SWEEP else ""
        return started
