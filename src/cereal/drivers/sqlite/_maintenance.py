"""The store side of a sweep on SQLite: expired leases, their settlement, stale claims.

Reading expired leases is one snapshot read (no write lock). Settling a
batch is one ``BEGIN IMMEDIATE`` transaction in which each settlement first
reads its task under the lease token it names, still running and still past
its deadline (``expired_lease``), and changes nothing when that read finds
no row. Releasing stale claims first reads whether any exists, so an idle
sweep never takes the write lock. ``cutoff`` (now minus the sweeper's
expiry) judges only leases and claims stored without an expiry, by older
code; every other one is judged by its holder's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cereal.drivers._lease_ids import row_id
from cereal.drivers._workflow_store import WAITING_KEYS_PER_SWEEP
from cereal.drivers.sqlite._sql import Q
from cereal.drivers.sqlite._sql import start_waiting_runs as start_waiting_runs_of
from cereal.drivers.sqlite._tasks import record_outcome, requeue
from cereal.models import ExpiredLease, LeaseSettlement, TaskStatus


def expired_leases(
    conn: sqlite3.Connection, at: float, cutoff: float, limit: int
) -> list[ExpiredLease]:
    """Up to ``limit`` leases past their deadline at ``at``, oldest heartbeat first."""
    params = {"now": at, "cutoff": cutoff, "limit": limit}
    return [
        ExpiredLease(
            task_id=str(row["id"]),
            lease=str(row["lease_token"]),
            attempt=int(row["attempt"]),
            task_name=str(row["task_name"]),
            workflow_name=str(row["workflow_name"]),
            instance_name=str(row["instance_name"]),
            retry_policy=row["retry_policy"],
        )
        for row in conn.execute(Q["expired_task_leases"], params).fetchall()
    ]


def settle(
    conn: sqlite3.Connection, settlements: Sequence[LeaseSettlement], at: float, cutoff: float
) -> list[tuple[str, str | None]]:
    """Apply each settlement whose lease is still the task's and still expired at ``at``.

    Returns:
        Per settlement applied, its task id and the workflow to wake (``None``
        for a retry: nothing reaches the workflow).
    """
    applied: list[tuple[str, str | None]] = []
    for settlement in settlements:
        task_id = row_id(settlement.task_id)
        if task_id is None:
            continue
        params = {"task_id": task_id, "token": settlement.lease, "now": at, "cutoff": cutoff}
        task = conn.execute(Q["expired_lease"], params).fetchone()
        if task is None:
            continue
        if settlement.delay is not None:
            requeue(conn, task_id, at + settlement.delay, refund=False)
            applied.append((settlement.task_id, None))
        else:
            record_outcome(conn, task, TaskStatus.LOST, settlement.error, None)
            applied.append((settlement.task_id, str(task["workflow_name"])))
    return applied


def has_stale_claim(conn: sqlite3.Connection, at: float, cutoff: float) -> bool:
    """Whether a workflow claim is past its claimer's expiry at ``at``.

    A claim stored without an expiry is stale when its heartbeat is older than ``cutoff``.
    """
    params = {"now": at, "cutoff": cutoff}
    return conn.execute(Q["has_stale_claim"], params).fetchone() is not None


def release_stale_claims(conn: sqlite3.Connection, at: float, cutoff: float) -> int:
    """Release workflow claims past their claimer's expiry (as :func:`has_stale_claim`)."""
    return int(conn.execute(Q["release_stale_claims"], {"now": at, "cutoff": cutoff}).rowcount)


def has_waiting_run(conn: sqlite3.Connection) -> bool:
    """Whether any run waits for its workflow concurrency key (a read, before the lock)."""
    return conn.execute(Q["has_waiting_run"]).fetchone() is not None


def start_waiting_runs(conn: sqlite3.Connection, after: str) -> tuple[list[str], str]:
    """Start the waiting runs of the next keys after ``after`` that have room.

    A run's end starts the next waiting runs of its key in its own
    transaction; this catches those a process of an earlier release ended.
    It looks at up to :data:`WAITING_KEYS_PER_SWEEP` keys in key order.

    Returns:
        The workflow names of the runs started, and where the next sweep goes
        on (``""``: from the first key again).
    """
    params = {"after": after, "limit": WAITING_KEYS_PER_SWEEP}
    keys = [
        str(row["concurrency_key"]) for row in conn.execute(Q["keys_with_waiting_runs"], params)
    ]
    started: list[str] = []
    for key in keys:
        started.extend(start_waiting_runs_of(conn, key))
    return started, keys[-1] if len(keys) == WAITING_KEYS_PER_SWEEP else ""
