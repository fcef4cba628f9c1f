"""Asking a PostgreSQL schedule for a run under its overlap policy, inside a transaction.

Shared by the scheduler's completer (which holds the schedule's row lock
already) and ``trigger_workflow_schedule`` (which takes it here). The
schedule row is locked first, then the instance (kill, insert, cancel): no
statement locks them in the other order, so no lock cycle can form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cereal.drivers.base import start_run_plan
from cereal.drivers.postgres._db import Conn, fetch_one
from cereal.drivers.postgres._listen import Wake
from cereal.drivers.postgres._workflow_keys import start_waiting_runs
from cereal.models import RunOutcome

if TYPE_CHECKING:
    from cereal.drivers.postgres._base import PostgresBase


async def start_run(
    driver: PostgresBase,
    conn: Conn,
    workflow_name: str,
    instance_name: str,
    kill_error: str,
    behind: list[str] | None = None,
) -> tuple[RunOutcome, list[Wake]] | None:
    """Apply the schedule's overlap policy in ``conn``'s open transaction (not committed).

    The instance gets the parameters stored in the (locked) schedule row.
    ``behind`` receives the workflow concurrency key of a waiting run it
    replaced: the caller starts the runs behind it after the commit
    (``PostgresBase._start_runs_behind``).

    Returns:
        The outcome and the wakeups to announce after the commit, or None when
        no such schedule exists.
    """
    behind = [] if behind is None else behind
    names = {"workflow_name": workflow_name, "instance_name": instance_name}
    state = await fetch_one(conn, "schedule_run_state", names)
    if state is None:
        return None
    schedule_id = {"schedule_id": state["id"]}
    pending = bool(state["run_pending"])
    outcome = start_run_plan(state["overlap"], bool(state["live"]), pending)
    started: list[str] = []  # runs a replaced run's end started from waiting for its key
    if outcome is RunOutcome.REPLACED:
        started += await _kill(conn, names, kill_error, behind)
    if outcome.started and await fetch_one(conn, "start_scheduled_instance", schedule_id) is None:
        # an instance was enqueued since the check: the policy applies to it
        outcome = start_run_plan(state["overlap"], True, pending)
        if outcome is RunOutcome.REPLACED:
            started += await _kill(conn, names, kill_error, behind)
            await fetch_one(conn, "start_scheduled_instance", schedule_id)
    if outcome is RunOutcome.CANCELLING:
        # no NOTIFY here: record_schedule_run sends the transaction's one
        await fetch_one(conn, "cancel_workflow", {**names, "note": None})
    wakes: list[Wake] = [("workflow", name) for name in dict.fromkeys(started)]
    if outcome in (RunOutcome.STARTED, RunOutcome.REPLACED, RunOutcome.CANCELLING):
        wakes.append(("workflow", workflow_name))
    waiting = outcome in (RunOutcome.BUFFERED, RunOutcome.CANCELLING) or (
        outcome is RunOutcome.SKIPPED and pending
    )
    if waiting:
        wakes.append(("schedule", None))  # other schedulers learn that a run waits
    await fetch_one(
        conn,
        "record_schedule_run",
        {
            **schedule_id,
            "run_pending": waiting,
            "started": outcome.started,
            "note": driver._note(wakes),
        },
    )
    return outcome, wakes


async def _kill(conn: Conn, names: dict[str, str], kill_error: str, behind: list[str]) -> list[str]:
    """Kill the live run of ``names``; the workflows of the runs its key's freed place started.

    The live run may be one enqueued under a workflow concurrency key. A
    waiting one's key goes to ``behind``: its successors are started after
    the commit (``PostgresBase._start_runs_behind``, as ``kill_workflow``).
    """
    row = await fetch_one(conn, "kill_instance", {**names, "error": kill_error})
    if row is None or row["concurrency_key"] is None:
        return []
    if row["waiting_for_key"]:
        behind.append(row["concurrency_key"])
        return []
    return await start_waiting_runs(conn, [row["concurrency_key"]])
