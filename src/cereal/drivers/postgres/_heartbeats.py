"""Task lease heartbeats of one process, joined into one statement.

Every running task renews its lease on its own timer. Renewals that come in
while a renewal statement is in flight are queued and sent together as the
next statement, so a process with many long tasks (whose runners tick
together) sends one statement per round instead of one per task.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from uuid import UUID

from cereal.drivers.postgres._db import fetch_all

if TYPE_CHECKING:
    from cereal.drivers.postgres._base import PostgresBase


class HeartbeatBatcher:
    """Renews task leases for one driver, many per statement."""

    def __init__(self, driver: PostgresBase) -> None:
        self._driver = driver
        self._queue: dict[tuple[int, UUID], asyncio.Future[bool]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def beat(self, task_id: int, lease: UUID) -> bool:
        """Renew one lease; False when it is gone.

        Raises:
            DriverError: the renewal did not reach the database.
        """
        key = (task_id, lease)
        future = self._queue.get(key)
        if future is None:
            future = self._queue[key] = asyncio.get_running_loop().create_future()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_all(), name="cereal-heartbeats"
            )
        return await asyncio.shield(future)

    async def _flush_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, {}
            params = {
                "task_ids": [task_id for task_id, _ in batch],
                "leases": [lease for _, lease in batch],
            }
            try:
                async with self._driver._connection("task heartbeats") as conn:
                    rows = await fetch_all(conn, "heartbeat_tasks", params)
            except BaseException as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            live = {row["id"] for row in rows}
            for (task_id, _), future in batch.items():
                if not future.done():
                    future.set_result(task_id in live)
