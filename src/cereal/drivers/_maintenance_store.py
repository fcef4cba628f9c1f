"""Maintenance: the store operations a sweep is made of.

Each operation is one statement or one short transaction (trimming: a few,
in bounded batches); none decides anything. What to do with an expired
lease (retry after the stored policy's backoff, or ``LOST``) is decided
above the stores, by the engine's sweep (``cereal/engine/sweep.py``), which
reads the expired leases, decides each, and hands the decisions back to
:meth:`MaintenanceStore.settle_expired_leases`. The store applies a
decision only where it still holds: the task runs under the same lease and
its deadline has passed by the store's clock, so a heartbeat, a report or
a new claim in between wins, and sweeps racing each other apply each
decision once.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from cereal.models import ExpiredLease, HistoryRetention, LeaseSettlement


class MaintenanceStore(abc.ABC):
    """Find and settle expired task leases, release stale workflow claims, trim history."""

    retention: HistoryRetention
    """How much finished-run history a sweep keeps (passed to :meth:`trim_history`)."""

    @abc.abstractmethod
    async def expired_task_leases(self, task_expiry: float, limit: int) -> list[ExpiredLease]:
        """Up to ``limit`` running tasks whose lease deadline has passed, oldest first.

        A read: nothing changes. A lease's deadline is its last heartbeat
        (or claim) plus the expiry its holder stored with it, judged by the
        store's clock. ``task_expiry`` judges a lease only when it has no
        stored expiry (taken by a cereal older than that column): then it
        expires ``task_expiry`` seconds after its last heartbeat, as before.
        """

    @abc.abstractmethod
    async def settle_expired_leases(
        self, settlements: Sequence[LeaseSettlement], *, task_expiry: float
    ) -> list[str]:
        """Apply each settlement, in one transaction, where its lease is still expired.

        A settlement applies only while its task still runs under the lease
        it names and that lease's deadline has still passed (``task_expiry``
        as in :meth:`expired_task_leases`); any other settlement (the task
        was heartbeated, reported, handed back or claimed again meanwhile,
        or the lease or task id is unknown) changes nothing. One with a
        ``delay`` queues its task again that many seconds from now; one
        without makes the task a ``LOST`` result with its ``error`` text and
        a ``task_complete`` event, waking the task's workflow. A store that
        would have to wait for a lock held elsewhere may skip a settlement
        (the lease stays expired, for the next sweep).

        Returns:
            The task ids of the settlements applied.
        """

    @abc.abstractmethod
    async def release_stale_claims(self, task_expiry: float) -> int:
        """Release workflow claims whose claimer stopped heartbeating; how many.

        A claim is stale once its claimer's stored ``claim_expiry`` has passed
        since its last heartbeat (``task_expiry`` judges claims stored
        without one). Its events are delivered again. Drivers whose claims
        end with their completer (memory) have none and return 0.
        """

    @abc.abstractmethod
    async def trim_history(self, retention: HistoryRetention) -> int | None:
        """Remove finished runs beyond ``retention``, in bounded batches; how many.

        Returns:
            The number of finished runs removed, or ``None`` when another
            process is trimming this store right now (so this one skipped it).
        """
