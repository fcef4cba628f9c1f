"""The completers the PostgreSQL driver hands out.

A workflow completer owns a claim token stored in its instance's row; the
events are untouched until a decision commits, so closing without one just
clears the token. Decisions and task completions go through the driver's
group commit (:mod:`._group_commit`). A scheduled-workflow
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

from cereal import errors
from cereal.checks.times import utcnow
from cereal.drivers.base import ScheduledWorkflowCompleter, TaskCompleter, WorkflowCompleter
from cereal.drivers.postgres._db import Conn, execute, fetch_one, translate
from cereal.drivers.postgres._group_commit import Statement
from cereal.drivers.postgres._listen import Wake
from cereal.drivers.postgres._schedule_runs import start_run
from cereal.models import FailureDetails, NewTask, RunOutcome
from cereal.retry import DEFAULT_MAX_HAND_BACKS

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


class PostgresWorkflowCompleter(WorkflowCompleter):
    """A claimed batch of one instance's events: the claim is a token in the instance row.

    No connection is held while the callbacks run. The decision goes through
    the driver's group commit: lock the claimed row, then (in a fresh
    snapshot) consume the batch, store the outcome and release the claim.
    """

    def __init__(
        self,
        driver: PostgresBase,
        *,
        instance_id: int,
        token: UUID,
        event_ids: list[int],
        task_result_ids: list[int],
        completed_tasks: int,
    ) -> None:
        self._driver = driver
        self._instance_id = instance_id
        self._token = token
        self._event_ids = event_ids
        self._task_result_ids = task_result_ids
        self._completed_tasks = completed_tasks
        self._open = True  # no decision committed yet, and not closed
        self._deciding = False

    def _begin_decision(self) -> None:
        if not self._open or self._deciding:
            raise RuntimeError("a decision was already applied to this completer, or it is closed")
        self._deciding = True

    def _decided(self) -> None:
        """The decision committed (or found the claim gone): nothing is left to release."""
        self._open = False

    def _claim(self) -> dict[str, object]:
        return {"instance_id": self._instance_id, "token": self._token}

    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Consume the batch, store payload and counters, insert ``tasks``, release the claim.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim lapsed; nothing stored.
        """
        now = utcnow()
        wakes: list[Wake] = [
            ("task", task.task_name)
            for task in tasks
            if task.start_after is None or task.start_after <= now
        ]
        await self._decide(
            finish=False,
            payload=payload,
            result=None,
            error=None,
            tasks=tasks,
            announce=wakes,
        )

    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim lapsed; nothing stored.
        """
        await self._decide(finish=True, payload=None, result=result, error=None)

    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error``.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim lapsed; nothing stored.
        """
        await self._decide(finish=True, payload=None, result=None, error=error)

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Finish the instance with ``failure``'s text, exception type and traceback.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim lapsed; nothing stored.
        """
        await self._decide(
            finish=True, payload=None, result=None, error=failure.error, failure=failure
        )

    async def _decide(
        self,
        *,
        finish: bool,
        payload: bytes | None,
        result: bytes | None,
        error: str | None,
        tasks: Sequence[NewTask] = (),
        announce: Sequence[Wake] = (),
        failure: FailureDetails | None = None,
    ) -> None:
        self._begin_decision()
        params = {
            **self._claim(),
            "finish": finish,
            "payload": payload,
            "completed": self._completed_tasks,
            "result": result,
            "error": error,
            "event_ids": self._event_ids,
            "result_ids": self._task_result_ids,
            "task_names": [task.task_name for task in tasks],
            "task_parameters": [task.parameters for task in tasks],
            "task_start_after": [task.start_after for task in tasks],
            "task_traceparents": [task.traceparent for task in tasks],
            "task_retry_policies": [task.retry_policy for task in tasks],
            "task_concurrency_keys": [task.concurrency_key for task in tasks],
            "task_concurrency_limits": [task.concurrency_limit for task in tasks],
            "task_rate_limit_starts": [task.rate_limit_starts for task in tasks],
            # (floats, all: psycopg sends one list of one type, and 60 may come as an int)
            "task_rate_limit_seconds": [
                None if task.rate_limit_seconds is None else float(task.rate_limit_seconds)
                for task in tasks
            ],
            "task_priorities": [task.priority for task in tasks],
            "task_idempotency_keys": [task.idempotency_key for task in tasks],
            "error_type": None if failure is None else failure.error_type,
            "error_traceback": None if failure is None else failure.error_traceback,
        }
        # a finish needs no more: the cascade removes the instance's tasks and events
        rows = await self._driver._group_commit(
            self._instance_id, [("apply_decisions", params)], announce=announce
        )
        self._decided()
        if rows[0] is None:
            raise errors.WorkflowClaimLostError()

    async def heartbeat(self) -> None:
        """Keep the claim alive during a long callback."""
        async with self._driver._connection("workflow claim heartbeat") as conn:
            row = await fetch_one(conn, "heartbeat_claim", self._claim())
        if row is None:
            logger.debug("the claim on instance %d is gone", self._instance_id)

    async def close(self) -> None:
        """Release the claim unless a decision committed: the batch is delivered again.

        A decision that failed to commit (storage unavailable) leaves the claim
        to be released here, so the events are redelivered at once.
        """
        if not self._open:
            return
        self._open = False
        statements: list[Statement] = [
            ("lock_claimed_instance", self._claim()),
            ("release_claimed", self._claim()),
        ]
        try:
            await self._driver._group_commit(self._instance_id, statements, kind="release")
        except errors.CerealError:
            # the claim lapses by itself: the sweep releases it after its expiry
            logger.warning(
                "releasing the claim on workflow instance %d failed; it is released "
                "when its expiry passes",
                self._instance_id,
                exc_info=True,
            )


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
        instance_name: str,
        due: bool,
    ) -> None:
        super().__init__(driver, pool, conn)
        self._schedule_id = schedule_id
        self._workflow_name = workflow_name
        self._instance_name = instance_name
        self.due = due

    async def run_and_advance(
        self,
        *,
        run: bool,
        next_due_at: datetime | None = None,
        enabled: bool | None = None,
        kill_error: str = "killed",
    ) -> RunOutcome:
        """Ask for a run under the overlap policy (if ``run``), advance, commit, release."""
        conn = self._begin_decision()
        outcome = RunOutcome.MISSED
        wakes: list[Wake] = []
        behind: list[str] = []  # the key of a waiting run replaced: its successors start after
        try:
            with translate("starting a scheduled workflow"):
                if run:
                    started = await start_run(
                        self._driver,
                        conn,
                        self._workflow_name,
                        self._instance_name,
                        kill_error,
                        behind,
                    )
                    if started is not None:  # the row is locked: it cannot have gone
                        outcome, wakes = started
                await execute(
                    conn,
                    "advance_schedule",
                    {
                        "schedule_id": self._schedule_id,
                        "next_due_at": next_due_at,
                        "enabled": enabled,
                    },
                )
                await conn.commit()
        finally:
            await self._release()
        self._driver._wake_all(wakes)
        await self._driver._start_runs_behind(behind)
        return outcome

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

    def __init__(
        self,
        driver: PostgresBase,
        task_id: int,
        lease: UUID,
        instance_id: int,
        workflow_name: str,
        *,
        task_name: str = "",
    ):
        self._driver = driver
        self._task_id = task_id
        self._lease = lease
        self.lease_token = str(lease)
        self._instance_id = instance_id
        self._workflow_name = workflow_name
        self._task_name = task_name

    async def heartbeat(self) -> None:
        """Refresh the lease (joined with other heartbeats of this process).

        Raises:
            TaskLostError: the lease is gone.
        """
        if not await self._driver._heartbeats.run((self._task_id, self._lease)):
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

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Record failure with the exception's text, type and traceback.

        Raises:
            TaskLostError: the lease is gone; nothing was recorded.
        """
        await self._complete("failed", failure.error, None, failure)

    async def abandon(self) -> None:
        """Report the task lost now.

        Raises:
            TaskLostError: the lease is gone already.
        """
        await self._complete("lost", "", None)

    async def retry(self, error: str, delay: float) -> None:
        """Queue the task again ``delay`` seconds from now (one statement; the lease ends).

        Raises:
            TaskLostError: the lease is gone; nothing changed.
        """
        params = {"task_id": self._task_id, "lease": self._lease, "delay": float(delay)}
        async with self._driver._connection("retrying a task") as conn:
            row = await fetch_one(conn, "retry_task", params)
        if row is None:
            raise errors.TaskLostError()

    async def hand_back(self) -> bool:
        """Queue the task again at once for any worker, the attempt not counted (a stop).

        After :data:`~cereal.retry.DEFAULT_MAX_HAND_BACKS` hand-backs the task
        is reported LOST instead. Either way other processes are notified.

        Raises:
            TaskLostError: the lease is gone already.
        """
        return await self._hand_back(counted=True)

    async def hand_back_unstarted(self) -> bool:
        """Queue the never-started task again at once; neither attempt nor hand-back counted.

        Raises:
            TaskLostError: the lease is gone already.
        """
        return await self._hand_back(counted=False)

    async def _hand_back(self, *, counted: bool) -> bool:
        params = {
            "task_id": self._task_id,
            "lease": self._lease,
            "counted": 1 if counted else 0,
            "max_hand_backs": DEFAULT_MAX_HAND_BACKS,
        }
        wakes: list[Wake] = [("task", self._task_name)]
        async with (
            self._driver._connection("handing a task back") as conn,
            conn.transaction(),
        ):
            row = await fetch_one(conn, "hand_back_task", params)
            note = self._driver._note(wakes) if row is not None else None
            if note is not None:
                await fetch_one(conn, "notify", {"note": note})
        if row is None:
            await self.abandon()  # TaskLostError if the lease is gone
            return False
        self._driver._wake_all(wakes)
        return True

    async def _complete(
        self, status: str, error: str, result: bytes | None, failure: FailureDetails | None = None
    ) -> None:
        wakes: list[Wake] = [("workflow", self._workflow_name)]
        # No NOTIFY on an ordinary completion: it is the hottest commit, a NOTIFYing
        # commit serialises on a cluster-wide lock, and this process's own workflow
        # runner is woken locally. A task abandoned at stop does notify: this process
        # is going away, so another one must pick the LOST event up now.
        announce = wakes if status == "lost" else []
        params = {
            "task_id": self._task_id,
            "lease": self._lease,
            "instance_id": self._instance_id,
            "status": status,
            "error": error,
            "result": result,
            "error_type": None if failure is None else failure.error_type,
            "error_traceback": None if failure is None else failure.error_traceback,
            "traceparent": self.result_traceparent,
        }
        rows = await self._driver._group_commit(
            self._instance_id, [("complete_tasks", params)], announce=announce, kind="completion"
        )
        if rows[0] is None:
            raise errors.TaskLostError()
        self._driver._wake_all(wakes)
