"""The live-worker list (optional for a driver: the default keeps this process's rows)."""

from __future__ import annotations

import threading
from datetime import datetime

from cereal.checks import times
from cereal.models import (
    NewWorker,
    WorkerInfo,
)


def _is_dead(worker: NewWorker, last_seen_at: datetime, now: datetime) -> bool:
    """Whether a worker row went unrefreshed for longer than its own expiry."""
    return (now - last_seen_at).total_seconds() > worker.expiry


class WorkerRegistry:
    """Register, refresh, unregister, list live workers (rule 9 in :mod:`~cereal.drivers.base`)."""

    def __init__(self) -> None:
        # the default registry: rows of this object only
        self._local_workers: dict[str, tuple[NewWorker, datetime, datetime]] = {}
        self._local_workers_lock = threading.Lock()

    # ---- live workers ---------------------------------------------------------------
    # These defaults keep the rows in this driver object, so they list the
    # Managers of this process only; drivers whose store is shared override all four.

    async def register_worker(self, worker: NewWorker) -> None:
        """Store ``worker``'s row as seen now (replacing a row with its id)."""
        now = times.utcnow()
        with self._local_workers_lock:
            known = self._local_workers.get(worker.id)
            self._local_workers[worker.id] = (worker, known[1] if known else now, now)

    async def refresh_worker(self, worker_id: str) -> bool:
        """Mark the worker seen now and drop dead rows.

        Returns False when its row is gone (dropped after a long silence):
        the caller registers again.
        """
        now = times.utcnow()
        with self._local_workers_lock:
            self._drop_dead_local_workers(now)
            known = self._local_workers.get(worker_id)
            if known is None:
                return False
            self._local_workers[worker_id] = (known[0], known[1], now)
            return True

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's row; a missing row is fine."""
        with self._local_workers_lock:
            self._local_workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers, oldest first; dead rows are left out (refreshes delete them)."""
        now = times.utcnow()
        with self._local_workers_lock:
            rows = [
                row for row in self._local_workers.values() if not _is_dead(row[0], row[2], now)
            ]
        found = [
            WorkerInfo(
                id=worker.id,
                host=worker.host,
                pid=worker.pid,
                started_at=started,
                last_seen_at=seen,
                workflow_names=worker.workflow_names,
                task_names=worker.task_names,
                version=worker.version,
            )
            for worker, started, seen in rows
        ]
        return sorted(found, key=lambda info: (info.started_at, info.id))

    def _drop_dead_local_workers(self, now: datetime) -> None:
        dead = [
            worker_id
            for worker_id, (worker, _, seen) in self._local_workers.items()
            if _is_dead(worker, seen, now)
        ]
        for worker_id in dead:
            del self._local_workers[worker_id]
