"""Maintenance: the part of the driver contract a sweep uses."""

from __future__ import annotations

import abc

from cereal.models import (
    HistoryRetention,
    SweepReport,
)


class MaintenanceStore(abc.ABC):
    """Expire lost task leases, release stale workflow claims, trim finished history."""

    retention: HistoryRetention

    @abc.abstractmethod
    async def sweep(self, task_expiry: float) -> SweepReport:
        """Maintenance, safe to run from many Managers at once.

        Turns tasks whose stored lease deadline has passed into ``LOST``
        results with ``task_complete`` events (or, while the task's stored
        retry policy leaves attempts, queues them again after its backoff),
        releases workflow claims idle for longer than ``task_expiry`` seconds
        (drivers that lease them), and trims history per :attr:`retention`.
        ``task_expiry`` judges a task lease only when it has no stored
        deadline (taken by a cereal older than the deadline column): then it
        expires ``task_expiry`` seconds after its last heartbeat, as before.
        """
