"""The schedule side of the driver contract: recurring runs and their overlap policy."""

from __future__ import annotations

import abc
from datetime import datetime
from types import TracebackType
from typing import Self

from cereal.models import (
    Overlap,
    RunOutcome,
    Schedule,
    ScheduleUpdate,
)


class ScheduledWorkflowCompleter(abc.ABC):
    """Holds one schedule (locked against other schedulers) until applied or closed.

    A schedule is handed out for one of two reasons, told by :attr:`due`: its
    due time has passed (by the driver's clock), or a run it buffered
    (``run_pending``) can start because its instance is no longer live.
    """

    due: bool = True
    """True when the schedule was handed out because its due time passed; False when
    only its waiting run became ready (then the due time must not move)."""

    @abc.abstractmethod
    async def run_and_advance(
        self,
        *,
        run: bool,
        next_due_at: datetime | None = None,
        enabled: bool | None = None,
        kill_error: str = "killed",
    ) -> RunOutcome:
        """Ask for a run under the schedule's stored overlap policy and advance it, atomically.

        With ``run`` the driver applies the policy (see :func:`start_run_plan`):
        no live instance -> enqueue one with the parameters as read when the
        schedule was handed out, clear ``run_pending``, set ``last_enqueued_at``;
        live and ``skip`` -> nothing; ``buffer_one`` -> set ``run_pending``;
        ``cancel_other`` -> set ``run_pending`` and, unless it was set already,
        append a cancel event to the live instance; ``terminate_other`` -> kill
        the live instance with ``kill_error`` and enqueue a new one. Without
        ``run`` nothing starts (``MISSED``). ``next_due_at``/``enabled``, when
        given, are stored too (an update made meanwhile wins, as ever).
        """

    async def enqueue_and_update(self, *, next_due_at: datetime, enabled: bool) -> bool:
        """Ask for a run and advance the schedule (:meth:`run_and_advance` with ``run``).

        Returns True when an instance was enqueued; with the default ``skip``
        policy a live instance means the run is skipped and only ``next_due_at``
        and ``enabled`` change (``last_enqueued_at`` does not).
        """
        outcome = await self.run_and_advance(run=True, next_due_at=next_due_at, enabled=enabled)
        return outcome.started

    @abc.abstractmethod
    async def disable(self) -> None:
        """Disable the schedule (its rule no longer parses) and release it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the schedule; roll back if nothing was applied. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def start_run_plan(overlap: str, live: bool, pending: bool) -> RunOutcome:
    """What asking for a run does, given the policy and the state read in the transaction.

    Every driver applies this one table: ``STARTED`` (enqueue), ``REPLACED``
    (kill, then enqueue), ``SKIPPED``, ``BUFFERED`` (set ``run_pending``) or
    ``CANCELLING`` (set ``run_pending`` and send a cancel: only the first time,
    so a refused cancel is not repeated at every due time).
    """
    if not live:
        return RunOutcome.STARTED
    if overlap == "terminate_other":
        return RunOutcome.REPLACED
    if overlap == "buffer_one":
        return RunOutcome.BUFFERED
    if overlap == "cancel_other":
        return RunOutcome.BUFFERED if pending else RunOutcome.CANCELLING
    return RunOutcome.SKIPPED


class ScheduleStore(abc.ABC):
    """Schedules: create, read, update, delete, find the due one, run under its overlap policy."""

    # ---- schedules ------------------------------------------------------------------

    @abc.abstractmethod
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
        """Store a new schedule (values already checked by the Manager).

        Raises:
            WorkflowScheduleExistsError: one with these names exists.
        """

    @abc.abstractmethod
    async def list_workflow_schedules(
        self, *, limit: int | None = None, offset: int = 0
    ) -> list[Schedule]:
        """Every schedule, with ``last_start``/``last_end`` from its newest finished run.

        Sorted by workflow name, then instance name (a stable order to page
        in); ``offset`` skips that many, ``limit`` (None: all) caps the rest.
        Both are already checked by the Manager.
        """

    @abc.abstractmethod
    async def get_workflow_schedule(self, workflow_name: str, instance_name: str) -> Schedule:
        """One schedule (as in the list).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """

    @abc.abstractmethod
    async def update_workflow_schedule(
        self, workflow_name: str, instance_name: str, update: ScheduleUpdate
    ) -> None:
        """Apply every change of ``update`` in one transaction.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """

    @abc.abstractmethod
    async def delete_workflow_schedule(self, workflow_name: str, instance_name: str) -> None:
        """Remove a schedule (running instances it started are untouched).

        Raises:
            WorkflowScheduleNotFoundError: no such schedule.
        """

    @abc.abstractmethod
    async def get_due_scheduled_workflow(self) -> tuple[Schedule, ScheduledWorkflowCompleter]:
        """Lock the earliest enabled schedule whose due time has passed.

        Raises:
            NoDueWorkflowsError: none is due.
        """

    @abc.abstractmethod
    async def get_next_scheduled_workflow(self) -> Schedule:
        """The enabled schedule due soonest.

        Raises:
            NoScheduledWorkflowsError: no schedule is enabled.
        """

    @abc.abstractmethod
    async def trigger_workflow_schedule(
        self, workflow_name: str, instance_name: str, kill_error: str
    ) -> RunOutcome:
        """Ask for a run now under the schedule's overlap policy, in one transaction.

        As :meth:`ScheduledWorkflowCompleter.run_and_advance` with ``run`` and
        the schedule's current parameters; the due time and ``enabled`` stay.
        Waits for a scheduler holding the schedule where the backend locks rows.

        Raises:
            WorkflowScheduleNotFoundError: no such schedule; nothing changed.
        """

    @abc.abstractmethod
    async def has_waiting_schedule_runs(self) -> bool:
        """Whether any schedule has a run waiting for its live instance to end."""
