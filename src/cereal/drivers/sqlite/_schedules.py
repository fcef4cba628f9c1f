"""Schedules on SQLite: the scheduler's claim on a due schedule and its completer.

A scheduler claims the earliest due schedule with a token in a short
``BEGIN IMMEDIATE`` transaction (a claim older than ``claim_timeout`` counts as
abandoned), then enqueues and advances it in another one that first checks
the token. An update made while the claim is held is applied at once and also
remembered, so the scheduler's own change does not overwrite it: the same
outcome as if the update had waited for a row lock.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cereal import errors
from cereal.drivers.base import ScheduledWorkflowCompleter, start_run_plan
from cereal.drivers.sqlite._sql import Q, epoch, now, schedule_from_row
from cereal.drivers.sqlite._workflows import enqueue, kill
from cereal.models import UNSET, RunOutcome, Schedule, ScheduleUpdate

if TYPE_CHECKING:
    from cereal.drivers.sqlite.driver import SQLiteDriver

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduleClaim:
    """A claimed due schedule, as read when it was claimed."""

    token: str
    schedule: Schedule
    due: bool


def update_parameters(update: ScheduleUpdate) -> dict[str, object]:
    """The bound parameters of ``update_schedule`` for ``update``."""
    set_parameters = update.parameters is not UNSET
    return {
        "enabled": None if update.enabled is None else int(update.enabled),
        "set_parameters": int(set_parameters),
        "parameters": update.parameters if set_parameters else None,
        "recurrence": update.recurrence,
        "next_due_at": None if update.next_due_at is None else epoch(update.next_due_at),
        "due_rule": update.due_rule,
        "overlap": update.overlap,
        "catch_up_window": update.catch_up_window,
    }


def due_query(claim_timeout: float) -> dict[str, float]:
    """The bound parameters of ``next_due_schedule`` now."""
    at = now()
    return {"now": at, "stale_before": at - claim_timeout}


def has_due(conn: sqlite3.Connection, claim_timeout: float) -> bool:
    """Whether a due, unclaimed schedule exists (autocommit read)."""
    return conn.execute(Q["next_due_schedule"], due_query(claim_timeout)).fetchone() is not None


def claim_due(conn: sqlite3.Connection, claim_timeout: float) -> ScheduleClaim | None:
    """Claim the earliest due schedule (inside ``BEGIN IMMEDIATE``)."""
    row = conn.execute(Q["next_due_schedule"], due_query(claim_timeout)).fetchone()
    if row is None:
        return None
    token = uuid.uuid4().hex
    conn.execute(Q["claim_schedule"], {"schedule_id": row["id"], "token": token, "now": now()})
    return ScheduleClaim(token, schedule_from_row(row), bool(row["due"]))


def start_run(
    conn: sqlite3.Connection,
    workflow_name: str,
    instance_name: str,
    parameters: bytes | None,
    kill_error: str,
    started: list[str] | None = None,
) -> RunOutcome | None:
    """Ask a schedule for a run under its overlap policy (inside a write transaction).

    ``started`` receives the workflow names of runs a replaced run's end
    started from waiting for their key (to wake their runners).

    Returns:
        What happened, or None when the schedule no longer exists.
    """
    names = {"workflow_name": workflow_name, "instance_name": instance_name}
    state = conn.execute(Q["schedule_run_state"], names).fetchone()
    if state is None:
        return None
    live = conn.execute(Q["find_live_instance"], names).fetchone() is not None
    outcome = start_run_plan(str(state["overlap"]), live, bool(state["run_pending"]))
    if outcome is RunOutcome.REPLACED:
        freed = kill(conn, workflow_name, instance_name, kill_error)
        if started is not None:
            started.extend(freed)
    if outcome.started:
        enqueue(conn, workflow_name, instance_name, parameters)
    elif outcome is RunOutcome.CANCELLING:
        conn.execute(Q["insert_cancel_event"], {**names, "now": now()})
    conn.execute(
        Q["record_schedule_run"],
        {
            "schedule_id": state["id"],
            "run_pending": int(
                outcome in (RunOutcome.BUFFERED, RunOutcome.CANCELLING)
                or (not outcome.started and bool(state["run_pending"]))
            ),
            "started": int(outcome.started),
            "now": now(),
        },
    )
    return outcome


def trigger(
    workflow_name: str, instance_name: str, kill_error: str, started: list[str] | None = None
) -> Callable[[sqlite3.Connection], RunOutcome | None]:
    """A job asking a schedule for a run now with its current parameters.

    ``started``: as :func:`start_run`'s.
    """

    def job(conn: sqlite3.Connection) -> RunOutcome | None:
        if started is not None:
            started.clear()  # a busy retry runs the job again
        names = {"workflow_name": workflow_name, "instance_name": instance_name}
        state = conn.execute(Q["schedule_run_state"], names).fetchone()
        if state is None:
            return None
        parameters = None if state["parameters"] is None else bytes(state["parameters"])
        return start_run(conn, workflow_name, instance_name, parameters, kill_error, started)

    return job


def release(claim: ScheduleClaim) -> Callable[[sqlite3.Connection], None]:
    """A job dropping a scheduler claim without any change."""

    def job(conn: sqlite3.Connection) -> None:
        conn.execute(
            Q["release_schedule"], {"schedule_id": claim.schedule.id, "token": claim.token}
        )

    return job


class SQLiteScheduleCompleter(ScheduledWorkflowCompleter):
    """The claim on one due schedule."""

    def __init__(self, driver: SQLiteDriver, claim: ScheduleClaim) -> None:
        self._driver = driver
        self._claim = claim
        self._open = True
        self.due = claim.due

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("this schedule completer already applied its change or closed")

    async def run_and_advance(
        self,
        *,
        run: bool,
        next_due_at: datetime | None = None,
        enabled: bool | None = None,
        kill_error: str = "killed",
    ) -> RunOutcome:
        """Ask for a run under the overlap policy (if ``run``), then advance and release.

        A run gets the parameters the schedule had when it was claimed. If the
        claim was lost meanwhile (the schedule was deleted, or the claim
        expired and another scheduler took it) nothing changes and the outcome
        is ``SKIPPED``.
        """
        self._check_open()
        claim = self._claim
        schedule = claim.schedule
        ids = {"schedule_id": schedule.id, "token": claim.token}

        started: list[str] = []

        def job(conn: sqlite3.Connection) -> RunOutcome | None:
            if conn.execute(Q["check_schedule_claim"], ids).fetchone() is None:
                return None
            outcome: RunOutcome | None = RunOutcome.MISSED
            if run:
                started.clear()  # a busy retry runs the job again
                outcome = start_run(
                    conn,
                    schedule.workflow_name,
                    schedule.instance_name,
                    schedule.parameters,
                    kill_error,
                    started,
                )
            conn.execute(
                Q["advance_schedule"],
                {
                    **ids,
                    "next_due_at": None if next_due_at is None else epoch(next_due_at),
                    "enabled": None if enabled is None else int(enabled),
                },
            )
            return outcome

        outcome = await self._driver._connection().call(job)
        self._open = False
        if outcome is None:
            logger.warning(
                "schedule %s/%s was deleted or taken over before it was applied",
                schedule.workflow_name,
                schedule.instance_name,
                extra={"event": "schedule_claim_lost"},
            )
            return RunOutcome.SKIPPED
        if outcome in (RunOutcome.STARTED, RunOutcome.REPLACED, RunOutcome.CANCELLING):
            self._driver._wake("workflow", schedule.workflow_name)
        for name in dict.fromkeys(started):  # runs the replaced run's end started
            self._driver._wake("workflow", name)
        return outcome

    async def disable(self) -> None:
        """Disable the schedule (its rule no longer parses) and release it."""
        self._check_open()
        ids = {"schedule_id": self._claim.schedule.id, "token": self._claim.token}

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(Q["disable_schedule"], ids)

        await self._driver._connection().call(job)
        self._open = False

    async def close(self) -> None:
        """Release the schedule unchanged if nothing was applied. Idempotent."""
        if not self._open:
            return
        self._open = False
        try:
            await self._driver._connection().call(release(self._claim))
        except errors.CerealError:
            # another scheduler may take it once the claim is older than claim_timeout
            logger.warning("could not release a schedule claim", exc_info=True)
