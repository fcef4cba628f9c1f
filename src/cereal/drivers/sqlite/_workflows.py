"""Workflow events on SQLite: claim an instance, apply a decision, or release it.

A dequeue claims the instance row with a random token and a heartbeat time in
a short ``BEGIN IMMEDIATE`` transaction; only instances without a claim are
eligible, so one callback per instance runs at a time across processes. No
write transaction stays open during the user's callback. The decision runs in
its own ``BEGIN IMMEDIATE`` transaction that first checks the token (else
:class:`~cereal.errors.WorkflowClaimLostError`, nothing changed) and then
applies everything at once. A ``task_complete`` event's task result is only
read at dequeue and deleted by the decision, so a rollback has nothing to
restore: closing without a decision just drops the claim.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cereal import errors
from cereal.drivers.base import WorkflowCompleter
from cereal.drivers.sqlite._sql import Q, blob, epoch, finish_instance, instant, now
from cereal.models import (
    ListWorkflowFilter,
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)

if TYPE_CHECKING:
    from cereal.drivers.sqlite.driver import SQLiteDriver

logger = logging.getLogger(__name__)

MISSING_RESULT_TEXT = "the task result was not found"

_Job = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Claim:
    """What a dequeue claimed: the instance (by token) and the event it holds."""

    instance_id: int
    token: str
    event_id: int
    workflow_name: str
    task_result_id: int | None
    event: WorkflowEvent


def has_event(conn: sqlite3.Connection, names_json: str) -> bool:
    """Whether an unclaimed instance of these names has an event (autocommit read)."""
    row = conn.execute(Q["next_workflow_event"], {"workflow_names": names_json}).fetchone()
    return row is not None


def claim_next_event(conn: sqlite3.Connection, names_json: str, expiry: float) -> Claim | None:
    """Claim the instance of the oldest eligible event (inside ``BEGIN IMMEDIATE``).

    The claim stores the claimer's ``expiry``: the sweep releases it only once
    that long has passed since its last heartbeat.
    """
    row = conn.execute(Q["next_workflow_event"], {"workflow_names": names_json}).fetchone()
    if row is None:
        return None
    token = uuid.uuid4().hex
    instance_id = int(row["instance_id"])
    conn.execute(
        Q["claim_instance"],
        {"instance_id": instance_id, "token": token, "now": now(), "expiry": expiry},
    )
    event_type = WorkflowEventType(row["event_type"])
    task_result_id = None if row["task_result_id"] is None else int(row["task_result_id"])
    task_result = None
    if event_type is WorkflowEventType.TASK_COMPLETE:
        task_result = _read_task_result(conn, task_result_id)
    completed = int(row["completed_tasks"]) + (1 if task_result is not None else 0)
    event = WorkflowEvent(
        type=event_type,
        instance=WorkflowInstanceData(
            workflow_name=str(row["workflow_name"]),
            instance_name=str(row["instance_name"]),
            status=WorkflowInstanceStatus(row["status"]),
            parameters=blob(row["parameters"]),
            payload=blob(row["payload"]),
            started_at=instant(row["started_at"]),
        ),
        enqueued_task_count=int(row["enqueued_tasks"]),
        completed_task_count=completed,
        enqueued_at=instant(row["event_enqueued_at"]),
        task_result=task_result,
    )
    return Claim(
        instance_id=instance_id,
        token=token,
        event_id=int(row["event_id"]),
        workflow_name=event.instance.workflow_name,
        task_result_id=task_result_id,
        event=event,
    )


def _read_task_result(conn: sqlite3.Connection, task_result_id: int | None) -> TaskResultData:
    row = None
    if task_result_id is not None:
        row = conn.execute(Q["get_task_result"], {"task_result_id": task_result_id}).fetchone()
    if row is None:
        return TaskResultData(
            task_name="", status=TaskStatus.UNUSABLE_RESULT, error_text=MISSING_RESULT_TEXT
        )
    return TaskResultData(
        task_name=str(row["task_name"]),
        status=TaskStatus(row["status"]),
        parameters=blob(row["parameters"]),
        error_text=str(row["error_text"]),
        result=blob(row["result"]),
    )


def release(claim: Claim) -> _Job:
    """A job dropping ``claim`` without a decision (the event is redelivered)."""

    def job(conn: sqlite3.Connection) -> None:
        conn.execute(Q["release_claim"], {"instance_id": claim.instance_id, "token": claim.token})

    return job


def names_json(workflow_names: Sequence[str]) -> str:
    """The workflow names as the JSON array ``next_workflow_event`` expects."""
    return json.dumps(sorted(set(workflow_names)))


def enqueue(
    conn: sqlite3.Connection, workflow_name: str, instance_name: str, params: bytes | None
) -> bool:
    """Create a live instance with its start event; False when one is live already."""
    at = now()
    row = conn.execute(
        Q["insert_instance"],
        {
            "workflow_name": workflow_name,
            "instance_name": instance_name,
            "parameters": params,
            "now": at,
        },
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        Q["insert_event"],
        {
            "instance_id": int(row["id"]),
            "workflow_name": workflow_name,
            "event_type": WorkflowEventType.START.value,
            "task_result_id": None,
            "now": at,
        },
    )
    return True


def kill(conn: sqlite3.Connection, workflow_name: str, instance_name: str, error: str) -> None:
    """Finish the live instance with ``error`` whether or not it is claimed.

    Raises:
        WorkflowInstanceNotFoundError: no live instance.
    """
    names = {"workflow_name": workflow_name, "instance_name": instance_name}
    row = conn.execute(Q["find_live_instance"], names).fetchone()
    if row is None:
        raise errors.WorkflowInstanceNotFoundError()
    finish_instance(conn, int(row["id"]), None, error, now())


def list_rows(conn: sqlite3.Connection, where: ListWorkflowFilter) -> list[sqlite3.Row]:
    """Live rows, then the newest finished run of each pair without one (one snapshot)."""
    names = {"workflow_name": where.workflow_name, "instance_name": where.instance_name}
    rows: list[sqlite3.Row] = []
    if where.is_running is not False:
        rows += conn.execute(Q["list_live_instances"], names).fetchall()
    if where.is_running is not True:
        if where.workflow_name is None:
            rows += conn.execute(Q["list_history_of_any_workflow"], names).fetchall()
        else:
            rows += conn.execute(Q["list_history_of_workflow"], names).fetchall()
    return rows


class SQLiteWorkflowCompleter(WorkflowCompleter):
    """Holds the claim on one instance and the event it was dequeued for."""

    def __init__(self, driver: SQLiteDriver, claim: Claim) -> None:
        self._driver = driver
        self._claim = claim
        self._open = True

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("this workflow completer already applied a decision or closed")

    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Consume the event, store payload and counts, and queue ``tasks``, atomically.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired; nothing stored.
        """
        self._check_open()
        claim = self._claim
        completes_task = 1 if claim.event.type is WorkflowEventType.TASK_COMPLETE else 0
        start_afters = [None if t.start_after is None else epoch(t.start_after) for t in tasks]

        def job(conn: sqlite3.Connection) -> None:
            at = now()
            updated = conn.execute(
                Q["continue_instance"],
                {
                    "payload": payload,
                    "added_tasks": len(tasks),
                    "completed_tasks": completes_task,
                    "instance_id": claim.instance_id,
                    "token": claim.token,
                },
            )
            if updated.rowcount != 1:
                raise errors.WorkflowClaimLostError()
            self._consume(conn)
            instance = claim.event.instance
            conn.executemany(
                Q["insert_task"],
                [
                    {
                        "instance_id": claim.instance_id,
                        "workflow_name": instance.workflow_name,
                        "instance_name": instance.instance_name,
                        "task_name": task.task_name,
                        "parameters": task.parameters,
                        "now": at,
                        "start_after": at if start_after is None else start_after,
                    }
                    for task, start_after in zip(tasks, start_afters, strict=True)
                ],
            )

        await self._decide(job)
        for task_name in dict.fromkeys(task.task_name for task in tasks):
            self._driver._wake("task", task_name)

    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired.
        """
        await self._finish(result, None)

    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error``.

        Raises:
            WorkflowClaimLostError: the instance ended or the claim expired.
        """
        await self._finish(None, error)

    async def _finish(self, result: bytes | None, error: str | None) -> None:
        self._check_open()
        claim = self._claim

        def job(conn: sqlite3.Connection) -> None:
            ids = {"instance_id": claim.instance_id, "token": claim.token}
            if conn.execute(Q["check_claim"], ids).fetchone() is None:
                raise errors.WorkflowClaimLostError()
            finish_instance(conn, claim.instance_id, result, error, now())

        await self._decide(job)

    def _consume(self, conn: sqlite3.Connection) -> None:
        conn.execute(Q["delete_event"], {"event_id": self._claim.event_id})
        if self._claim.task_result_id is not None:
            conn.execute(Q["delete_task_result"], {"task_result_id": self._claim.task_result_id})

    async def _decide(self, job: _Job) -> None:
        try:
            await self._driver._connection().call(job)
        except errors.WorkflowClaimLostError:
            self._open = False
            raise
        self._open = False

    async def heartbeat(self) -> None:
        """Refresh the claim so the sweep does not release it during a long callback."""
        if not self._open:
            return
        claim = self._claim

        def job(conn: sqlite3.Connection) -> None:
            ids = {"instance_id": claim.instance_id, "token": claim.token, "now": now()}
            if conn.execute(Q["heartbeat_claim"], ids).rowcount != 1:
                logger.debug("workflow claim already lost", extra={"event": "claim_lost"})

        await self._driver._connection().call(job)

    async def close(self) -> None:
        """Drop the claim if no decision was applied (the event is redelivered). Idempotent."""
        if not self._open:
            return
        self._open = False
        try:
            await self._driver._connection().call(release(self._claim))
        except errors.CerealError:
            # the sweep releases the claim once its heartbeat is older than the task expiry
            logger.warning("could not release a workflow claim", exc_info=True)
