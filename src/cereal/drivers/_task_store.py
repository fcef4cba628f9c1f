"""The task side of the driver contract: claim ready tasks under fenced leases."""

from __future__ import annotations

import abc

from cereal import errors
from cereal.models import (
    FailureDetails,
    TaskData,
)

DEFAULT_TASK_EXPIRY = 60.0
"""Seconds a task lease lasts without a heartbeat when the claimer passes no ``task_expiry``."""


class TaskCompleter(abc.ABC):
    """The lease on one claimed task: heartbeat it, then report how it ended."""

    lease_token: str | None = None
    """What proves this lease to :meth:`Driver.resume_task_lease` (None: not resumable)."""

    result_traceparent: str | None = None
    """The traced run's span (set by the task runner): stored with the result it reports.

    A driver that stores it hands it back as ``TaskResultData.traceparent``
    (else the task's own ``traceparent``); one that does not may ignore it.
    """

    @abc.abstractmethod
    async def heartbeat(self) -> None:
        """Move the lease's deadline to now plus the expiry it was claimed with.

        Raises:
            TaskLostError: the task is gone (its workflow ended, it expired, or
                it was already completed); the runner should cancel it.
        """

    @abc.abstractmethod
    async def succeed(self, result: bytes | None) -> None:
        """Record success with ``result`` and queue a ``task_complete`` event.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """

    @abc.abstractmethod
    async def fail(self, error: str) -> None:
        """Record failure with the error text ``error`` (as :meth:`succeed`)."""

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Record failure with the exception's type and traceback as well as its text.

        This default keeps only the text (:meth:`fail`); drivers that store
        the type and traceback override it.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self.fail(failure.error)

    @abc.abstractmethod
    async def abandon(self) -> None:
        """Give the task up now: its workflow sees it as ``LOST`` at once.

        Used by :meth:`hand_back` for a task handed back too often, and by
        its default for drivers without hand-back.

        Raises:
            TaskLostError: the lease is gone already.
        """

    async def retry(self, error: str, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now: a failed attempt with attempts left.

        The lease ends; the stored attempt count stays (the next claim adds
        one) and the workflow sees nothing. A driver without retries fails
        the task with ``error`` instead (this default).

        Raises:
            TaskLostError: the lease is gone; nothing changed.
        """
        await self.fail(error)

    async def hand_back(self) -> bool:
        """Give the task back to the queue at once, for any worker (a graceful stop).

        The attempt is not counted and no backoff applies; the task's
        hand-back count grows by one. A task handed back
        :data:`~cereal.retry.DEFAULT_MAX_HAND_BACKS` times before is reported
        ``LOST`` instead. Returns True when queued again, False when reported
        ``LOST``. A driver without hand-back reports ``LOST`` (this default).

        Raises:
            TaskLostError: the lease is gone already.
        """
        await self.abandon()
        return False

    async def hand_back_unstarted(self) -> bool:
        """Give back a task that was claimed but never started (a stop), for any worker.

        As :meth:`hand_back`, except that the hand-back is not counted: the
        limit is there for a task that keeps outliving a stop's grace period,
        and this one never ran, so on the drivers that implement it (memory,
        SQLite, PostgreSQL, and ``grpc://`` with a server that takes it) a
        stop that catches it in a claim however often can never make it
        ``LOST``. Returns True when queued again, False when reported ``LOST``
        (only where it falls back to :meth:`hand_back`, as this default does).

        Raises:
            TaskLostError: the lease is gone already.
        """
        return await self.hand_back()


class TaskStore(abc.ABC):
    """Queued tasks: claim a batch under leases, take a lease up again after a restart."""

    # ---- tasks ----------------------------------------------------------------------

    @abc.abstractmethod
    async def dequeue_tasks(
        self,
        task_name: str,
        max_tasks: int,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> list[tuple[TaskData, TaskCompleter]]:
        """Claim up to ``max_tasks`` ready tasks of ``task_name``, oldest first.

        A task is ready when it is queued and its ``start_after`` has passed.
        SQLite and PostgreSQL take the earliest ``start_after`` first (then
        the id), which for a task enqueued without delay is its enqueue time,
        so a claim never reads tasks that are not yet due.
        Each lease's deadline is stored as now (the driver's clock) plus
        ``task_expiry`` seconds, the claimer's expiry; each completer's
        ``heartbeat`` renews it by the same amount. Each claim adds one to
        the task's attempt count. ``retry_policy`` (the claimer's executor
        policy, stored form) is stored with every claimed task that has none
        yet, so later attempts and the sweep of an expired lease follow it;
        each :class:`TaskData` carries the task's stored policy. Returns an
        empty list when none is ready.
        """

    async def dequeue_task(
        self,
        task_name: str,
        *,
        task_expiry: float = DEFAULT_TASK_EXPIRY,
        retry_policy: str | None = None,
    ) -> tuple[TaskData, TaskCompleter]:
        """Claim one ready task (its lease lasts ``task_expiry`` seconds per heartbeat).

        Raises:
            NoTasksError: none is ready.
        """
        claimed = await self.dequeue_tasks(
            task_name, 1, task_expiry=task_expiry, retry_policy=retry_policy
        )
        if not claimed:
            raise errors.NoTasksError()
        return claimed[0]

    async def resume_task_lease(
        self, task_id: str, lease_token: str
    ) -> tuple[TaskData, TaskCompleter]:
        """Take up a running task's lease again, by its id and its completer's ``lease_token``.

        For a holder that lost its completer but not its lease (``cereal
        serve`` restarted while its client ran the task on). The lease stays
        what it was (token, stored expiry, attempt); its deadline moves as by
        a heartbeat. Drivers declaring ``RESUMABLE_LEASES`` implement it.

        Raises:
            TaskLostError: no task ``task_id`` runs under ``lease_token`` (it
                ended, expired or was claimed again; nothing changed), or the
                driver cannot resume leases (this default).
        """
        raise errors.TaskLostError(f"{type(self).__name__} cannot resume task leases")
