"""Schedule storage of the PostgreSQL driver (a part of :class:`PostgresDriver`)."""

from __future__ import annotations

from datetime import datetime

import psycopg

from cereal import errors
from cereal.drivers.postgres._base import PostgresBase
from cereal.drivers.postgres._completers import PostgresScheduledWorkflowCompleter
from cereal.drivers.postgres._db import fetch_all, fetch_one, schedule_from_row, translate
from cereal.drivers.postgres._listen import Wake
from cereal.drivers.postgres._schedule_runs import start_run
from cereal.models import Overlap, RunOutcome, Schedule, ScheduleUpdate, Unset


class PostgresSchedules(PostgresBase):
    """Schedules: CRUD, and due schedules locked ``FOR UPDATE SKIP LOCKED``."""

    async def create_workflow_schedule(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        enabled: bool,
        recurrence: str,
        next_due_at: datetime,
        *,
        overlap: Overlap = "skip",
        catch_up_window: float = 0.0,
    ) -> None:
        """Store a new schedule.

        Raises:
            WorkflowScheduleExistsError: one with these names exists.
        """
        wakes: list[Wake] = [("schedule", None)]
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": parameters,
            "enabled": enabled,
            "recurrence": recurrence,
            "next_due_at": next_due_at,
            "overlap": overlap,
            "catch_up_window": catch_up_window,
            "note": self._note(wakes),
        }
        try:
            async with self._connection("create_workflow_schedule") as conn:
                await fetch_one(conn, "create_schedule", params)
        except errors.DriverError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise errors.WorkflowScheduleExistsError() from exc.__cause__
            raise
        self._wake_all(wakes)

    async def list_workflow_schedules(
        self, *, limit: int | None = None, offset: int = 0
    ) -> list[Schedule]:
        """See :meth:`Driver.list_workflow_schedules`; the query applies the page."""
        page = {"page_limit": limit, "page_offset": offset}
        async with self._connection("list_workflow_schedules") as conn:
            rows = await fetch_all(conn, "list_schedules", page)
        return [schedule_from_row(row) for row in rows]

    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """One schedule, as in the list.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        params = {"workflow_name": workflow_name, "instance_name": instance_name}
        async with self._connection("get_workflow_schedule") as conn:
            row = await fetch_one(conn, "get_schedule", params)
        if row is None:
            raise errors.WorkflowScheduleNotFoundError()
        return schedule_from_row(row)

    async def update_workflow_schedule(
        self, workflow_name: str, instance_name: str, update: ScheduleUpdate
    ) -> None:
        """Apply every change of ``update`` in one statement.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """
        wakes: list[Wake] = [("schedule", None)]
        unset = isinstance(update.parameters, Unset)
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "enabled": update.enabled,
            "set_parameters": not unset,
            "parameters": None if isinstance(update.parameters, Unset) else update.parameters,
            "recurrence": update.recurrence,
            "next_due_at": update.next_due_at,
            "due_rule": update.due_rule,
            "overlap": update.overlap,
            "catch_up_window": update.catch_up_window,
            "note": self._note(wakes),
        }
        async with self._connection("update_workflow_schedule") as conn:
            row = await fetch_one(conn, "update_schedule", params)
        if row is None:
            raise errors.WorkflowScheduleNotFoundError()
        self._wake_all(wakes)

    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """Remove a schedule (instances it started are untouched).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        wakes: list[Wake] = [("schedule", None)]
        params = {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "note": self._note(wakes),
        }
        async with self._connection("delete_workflow_schedule") as conn:
            row = await fetch_one(conn, "delete_schedule", params)
        if row is None:
            raise errors.WorkflowScheduleNotFoundError()
        self._wake_all(wakes)

    async def get_due_scheduled_workflow(
        self,
    ) -> tuple[Schedule, PostgresScheduledWorkflowCompleter]:
        """Lock the earliest due enabled schedule until its completer finishes.

        Raises:
            NoDueWorkflowsError: none is due (or every due one is locked).
        """
        with translate("get_due_scheduled_workflow"):
            pool = self._require_pool()
            conn = await self._acquire(pool)
            try:
                await conn.execute("BEGIN")
                row = await fetch_one(conn, "lock_due_schedule", {})
                if row is None:
                    raise errors.NoDueWorkflowsError()
            except BaseException:
                await self._release(pool, conn)
                raise
        schedule = schedule_from_row(row)
        completer = PostgresScheduledWorkflowCompleter(
            self,
            pool,
            conn,
            schedule_id=schedule.id,
            workflow_name=schedule.workflow_name,
            instance_name=schedule.instance_name,
            due=bool(row["due"]),
        )
        return schedule, completer

    async def trigger_workflow_schedule(
        self, workflow_name: str, instance_name: str, kill_error: str
    ) -> RunOutcome:
        """Ask for a run now under the schedule's overlap policy, in one transaction.

        Waits for a scheduler holding the schedule's row lock; the due time stays.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """
        behind: list[str] = []
        async with self._connection("trigger_workflow_schedule") as conn, conn.transaction():
            started = await start_run(self, conn, workflow_name, instance_name, kill_error, behind)
        if started is None:
            raise errors.WorkflowScheduleNotFoundError()
        outcome, wakes = started
        self._wake_all(wakes)
        await self._start_runs_behind(behind)
        return outcome

    async def has_waiting_schedule_runs(self) -> bool:
        """Whether any schedule has a run waiting for its live instance to end."""
        async with self._connection("has_waiting_schedule_runs") as conn:
            row = await fetch_one(conn, "has_waiting_schedule_run", {})
        return row is not None and bool(row["waiting"])

    async def get_next_scheduled_workflow(self) -> Schedule:
        """The enabled schedule due soonest.

        Raises:
            NoScheduledWorkflowsError: no schedule is enabled.
        """
        async with self._connection("get_next_scheduled_workflow") as conn:
            row = await fetch_one(conn, "next_schedule", {})
        if row is None:
            raise errors.NoScheduledWorkflowsError()
        return schedule_from_row(row)
