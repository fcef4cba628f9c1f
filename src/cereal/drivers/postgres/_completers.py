"""The completers the PostgreSQL driver hands out.

A workflow completer owns a pooled connection whose session holds the
instance's advisory lock (the claim); the event is untouched until a decision
commits, so closing without one just drops the lock. A scheduled-workflow
completer owns a pooled connection with an open transaction holding the
schedule's row lock. A task completer owns only the lease token: every call
presents it, so a lost lease changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from psycopg.pq import TransactionStatus

from cereal import errors
from cereal._time import utcnow
from cereal.drivers.base import ScheduledWorkflowCompleter, TaskCompleter, WorkflowCompleter
from cereal.drivers.postgres._db import Conn, execute, fetch_one, translate
from cereal.drivers.postgres._listen import Wake
from cereal.models import NewTask

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from cereal.drivers.postgres._base import PostgresBase

logger = logging.getLogger(__name__)


class _HeldConnection:
    """A pooled connection owned by one completer, released exactly once."""

    def __init__(self, driver: PostgresBase, pool: AsyncConnectionPool[Conn], conn: Conn):
        self._driver = driver
        self._pool = pool
        self._conn: Conn | None = conn
        self._decided = False

    def _begin_decision(self) -> Conn:
        if self._decided:
            raise RuntimeError("a decision was already applied to this completer")
        if self._conn is None:
            raise RuntimeError("the completer is closed")
        self._decided = True
        return self._conn

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._driver._release(self._pool, conn)


class PostgresWorkflowCompleter(_HeldConnection, WorkflowCompleter):
    """One claimed event: the claim is the instance's advisory lock on our session."""

    def __init__(
        self,
        driver: PostgresBase,
        pool: AsyncConnectionPool[Conn],
        conn: Conn,
        *,
        instance_id: int,
        event_id: int,
        task_result_id: int | None,
        completed_tasks: int,
    ) -> None:
        super().__init__(driver, pool, conn)
        self._instance_id = instance_id
        self._event_id = event_id
        self._task_result_id = task_result_id
        self._completed_tasks = completed_tasks

    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Store the payload and counters, insert ``tasks`` and consume the event.

        Raises:
            WorkflowClaimLostError: the instance ended meanwhile; nothing stored.
        """
        conn = self._begin_decision()
        now = utcnow()
        wakes: list[Wake] = [
            ("task", task.task_name)
            for task in tasks
            if task.start_after is None or task.start_after <= now
        ]
        params = {
            "instance_id": self._instance_id,
            "event_id": self._event_id,
            "task_result_id": self._task_result_id,
            "payload": payload,
            "completed_tasks": self._completed_tasks,
            "task_names": [task.task_name for task in tasks],
            "task_parameters": [task.parameters for task in tasks],
            "task_start_after": [task.start_after for task in tasks],
            "note": self._driver._note(wakes),
        }
        try:
            with translate("continue_"):
                row = await fetch_one(conn, "continue_workflow", params)
        finally:
            await self.close()
        if row is None:
            raise errors.WorkflowClaimLostError()
        self._driver._wake_all(wakes)

    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Raises:
            WorkflowClaimLostError: the instance ended meanwhile; nothing stored.
        """
        await self._finish(result, None)

    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error``.

        Raises:
            WorkflowClaimLostError: the instance ended meanwhile; nothing stored.
        """
        await self._finish(None, error)

    async def _finish(self, result: bytes | None, error: str | None) -> None:
        conn = self._begin_decision()
        params = {"instance_id": self._instance_id, "result": result, "error": error}
        try:
            with translate("finishing a workflow"):
                # one statement: the cascade removes the instance's tasks and events
                row = await fetch_one(conn, "finish_instance", params)
        finally:
            await self.close()
        if row is None:
            raise errors.WorkflowClaimLostError()

    async def close(self) -> None:
        """Drop the claim; without a decision the event is delivered again."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
                await execute(conn, "release_claims", {})
            else:
                await conn.close()  # the server drops the session's locks with it
        except BaseException as exc:
            await conn.close()
            if not isinstance(exc, Exception):
                raise
            logger.debug("dropped a connection that failed to release its claim: %s", exc)
        finally:
            await self._driver._release(self._pool, conn)


class PostgresScheduledWorkflowCompleter(_HeldConnection, ScheduledWorkflowCompleter):
    """One due schedule, locked against other schedulers until closed."""

    def __init__(
        self,
        driver: PostgresBase,
        pool: AsyncConnectionPool[Conn],
        conn: Conn,
        *,
        schedule_id: int,
        workflow_name: str,
    ) -> None:
        super().__init__(driver, pool, conn)
        self._schedule_id = schedule_id
        self._workflow_name = workflow_name

    async def enqueue_and_update(self, *, next_due_at: datetime, enabled: bool) -> bool:
        """Enqueue the instance unless one is live, and advance the schedule."""
        conn = self._begin_decision()
        wakes: list[Wake] = [("workflow", self._workflow_name)]
        params = {
            "schedule_id": self._schedule_id,
            "next_due_at": next_due_at,
            "enabled": enabled,
            "note": self._driver._note(wakes),
        }
        try:
            with translate("enqueueing a scheduled workflow"):
                row = await fetch_one(conn, "enqueue_scheduled", params)
                enqueued = row is not None and row["enqueued"] > 0
                await conn.commit()
        finally:
            await self._release()
        if enqueued:
            self._driver._wake_all(wakes)
        return enqueued

    async def disable(self) -> None:
        """Disable the schedule and release it."""
        conn = self._begin_decision()
        try:
            with translate("disabling a schedule"):
                await execute(conn, "disable_schedule", {"schedule_id": self._schedule_id})
                await conn.commit()
        finally:
            await self._release()

    async def close(self) -> None:
        """Release the schedule; roll back if nothing was applied."""
        await self._release()


class PostgresTaskCompleter(TaskCompleter):
    """The lease on one claimed task; every call presents the lease token."""

    def __init__(self, driver: PostgresBase, task_id: int, lease: UUID, workflow_name: str):
        self._driver = driver
        self._task_id = task_id
        self._lease = lease
        self._workflow_name = workflow_name

    async def heartbeat(self) -> None:
        """Refresh the lease.

        Raises:
            TaskLostError: the lease is gone.
        """
        params = {"task_id": self._task_id, "lease": self._lease}
        async with self._driver._connection("task heartbeat") as conn:
            row = await fetch_one(conn, "heartbeat_task", params)
        if row is None:
            raise errors.TaskLostError()

    async def succeed(self, result: bytes | None) -> None:
        """Record success with ``result``.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self._complete("success", "", result)

    async def fail(self, error: str) -> None:
        """Record failure with the error text ``error``.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self._complete("failed", error, None)

    async def abandon(self) -> None:
        """Report the task lost now.

        Raises:
            TaskLostError: the lease is gone already.
        """
        await self._complete("lost", "", None)

    async def _complete(self, status: str, error: str, result: bytes | None) -> None:
        wakes: list[Wake] = [("workflow", self._workflow_name)]
        # No NOTIFY on an ordinary completion: it is the hottest commit, a NOTIFYing
        # commit serialises on a cluster-wide lock, and this process's own workflow
        # runner is woken locally. A task abandoned at stop does notify: this process
        # is going away, so another one must pick the LOST event up now.
        note = self._driver._note(wakes) if status == "lost" else None
        params = {
            "task_id": self._task_id,
            "lease": self._lease,
            "status": status,
            "error": error,
            "result": result,
            "note": note,
        }
        async with self._driver._connection("task completion") as conn:
            row = await fetch_one(conn, "complete_task", params)
        if row is None:
            raise errors.TaskLostError()
        self._driver._wake_all(wakes)
