"""Task lease heartbeats of one process, joined into one statement.

Every running task renews its lease on its own timer. Renewals that come in
while a renewal statement is in flight queue on a shared
:class:`~cereal.drivers._batching.Batcher` and go out together as the next
statement, so a process with many long tasks (whose runners tick together)
sends one statement per round instead of one per task. A statement that
fails fails every renewal it carried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from cereal.drivers._batching import Batcher
from cereal.drivers.postgres._db import fetch_all

if TYPE_CHECKING:
    from cereal.drivers.postgres._base import PostgresBase

Beat = tuple[int, UUID]
"""A task id and its lease."""

HeartbeatBatcher = Batcher[Beat, bool]
"""The queue of one process's renewals; each caller learns whether its lease still exists."""


def heartbeat_batcher(driver: PostgresBase) -> HeartbeatBatcher:
    """A queue of lease renewals sent together through ``heartbeat_tasks``."""

    async def renew(group: Sequence[Beat]) -> list[bool]:
        given = list(dict.fromkeys(group))  # the same lease renewed twice is sent once
        params = {
            "task_ids": [task_id for task_id, _ in given],
            "leases": [lease for _, lease in given],
        }
        async with driver._connection("task heartbeats") as conn:
            rows = await fetch_all(conn, "heartbeat_tasks", params)
        live = {row["id"] for row in rows}
        return [task_id in live for task_id, _ in group]

    return Batcher(renew, name="cereal-heartbeats")
