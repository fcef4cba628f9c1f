"""Group commit on PostgreSQL: writes that arrive together share one transaction.

Task completions and workflow decisions are small writes made by many
coroutines at once. Each one on its own transaction costs a commit (a WAL
flush) and a few round trips; instead they queue on a shared
:class:`~cereal.drivers._batching.Batcher` (no timer, one group in flight,
each caller resumed after the commit holding its write, a failed group
retried write by write) and this module commits each group: completions
merged into one ``complete_tasks`` statement, decisions into one
``cereal_apply_decisions`` call, releases of claims as one pipelined
transaction. When an idle runner of this process promised to take the tasks
a decision group adds, the group's transaction also claims them for it
(``claim_unkeyed_tasks``) and the flush delivers them: the runner starts
them without a claim, a round trip and a commit of its own. Within a group
the writes run in ascending order of their instance id: every statement
locks its instance row first, so two groups (in two processes) always take
instance locks in the same order and cannot deadlock on them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from psycopg.rows import dict_row

from cereal.checks import times
from cereal.drivers._batching import Batcher
from cereal.drivers.base import LocalPromise, PromisedClaim
from cereal.drivers.postgres._db import QUERIES, Conn, Row, translate
from cereal.drivers.postgres._listen import Wake

if TYPE_CHECKING:
    from cereal.drivers.postgres._base import PostgresBase

logger = logging.getLogger(__name__)

MAX_GROUP = 256
"""Most writes in one transaction (keeps each transaction and its locks short)."""

Statement = tuple[str, Mapping[str, Any]]
"""A named query of ``queries.sql`` and its parameters."""


@dataclass(frozen=True)
class Write:
    """One caller's statements, run in order in the group's transaction.

    ``order`` is the instance id the statements lock first; ``announce``
    lists wakeups to send to other processes with the commit (one NOTIFY
    per group).
    """

    order: int
    statements: Sequence[Statement]
    announce: Sequence[Wake] = ()


class Committed(NamedTuple):
    """What a group's commit answered."""

    rows: list[list[Row | None]]
    """Each write's rows, in the group's order."""
    started: tuple[str, ...] = ()
    """The workflows of runs the group started from waiting for their key (to announce)."""
    claimed: tuple[list[Row], ...] = ()
    """The tasks each claim the group was given took, in the claims' order."""


class ClaimInCommit(NamedTuple):
    """A promise's claim as a group runs it: under its own lease token, as a dequeue."""

    claim: PromisedClaim
    lease: uuid.UUID


GroupRunner = Callable[
    [Conn, Sequence[Write], str | None, Sequence[ClaimInCommit]], Awaitable[Committed]
]
"""Commits one group on a connection: each write's rows, the runs it started and what
each claim took (a runner that takes no claims is given none)."""

GroupCommitter = Batcher[Write, list[Row | None]]
"""The queue of one kind of write; each caller gets the first row of each of its statements."""


class GroupFlush:
    """Commits a group of writes on one pooled connection, then wakes this process.

    Args:
        driver: the connections and wakeups.
        runner: sends the group (one statement per write, or one merged statement).
        claims_in_commit: the runner claims, in the group's transaction, the
            tasks local runners promised to take (see :class:`LocalPromise`).
    """

    def __init__(
        self, driver: PostgresBase, runner: GroupRunner, *, claims_in_commit: bool = False
    ) -> None:
        self._driver = driver
        self.runner = runner
        self._claims_in_commit = claims_in_commit

    async def __call__(self, group: Sequence[Write]) -> list[list[Row | None]]:
        """Commit ``group``; each write's rows.

        Raises:
            DriverError: the group did not commit.
        """
        announce = [wake for write in group for wake in write.announce]
        # tasks an idle local runner promises to take are not NOTIFYed: every
        # listening session pays a commit for each notification it receives
        elsewhere, promises = self._driver._promise_locally(announce)
        asked = self._claims_for(promises)
        note = self._driver._note(elsewhere)
        committed: Committed | None = None
        try:
            async with self._driver._connection("a group commit") as conn:
                committed = await self.runner(conn, group, note, [claim for _, claim in asked])
        finally:
            if committed is not None:
                self._deliver(asked, committed.claimed)
            else:
                # the transaction may have committed before its answer was lost:
                # give whatever its claims took back to the queue (no-op if it did not)
                for _, (claim, lease) in asked:
                    self._driver._in_background(self._driver._unclaim(claim.task_name, lease))
            for promise in promises:
                promise.settle()
        # runs a finished run's end started from waiting for their key: announced after
        # the commit, best effort (a failure must not fail decisions that committed;
        # other processes still poll)
        started: list[Wake] = [("workflow", name) for name in committed.started]
        later = self._driver._note(started)
        if later is not None:
            await self._driver._send_note(later)
        self._driver._wake_all([*announce, *started])
        return committed.rows

    def _claims_for(
        self, promises: Sequence[LocalPromise]
    ) -> list[tuple[LocalPromise, ClaimInCommit]]:
        if not self._claims_in_commit:
            return []
        asked = []
        for promise in promises:
            claim = promise.claim_request()
            if claim is not None:
                asked.append((promise, ClaimInCommit(claim, uuid.uuid4())))
        return asked

    def _deliver(
        self, asked: Sequence[tuple[LocalPromise, ClaimInCommit]], claimed: Sequence[list[Row]]
    ) -> None:
        """Hand each promise the tasks claimed for it (the commit succeeded)."""
        for (promise, (claim, lease)), rows in zip(asked, claimed, strict=False):
            # a full claim that took older tasks may have left promised ones queued
            passed_over = len(rows) >= claim.max_tasks and not all(
                row["added_here"] for row in rows
            )
            try:
                promise.deliver(
                    [self._driver._leased_task(row) for row in rows], passed_over=passed_over
                )
            except Exception:
                logger.exception("delivering %d claimed task(s) to a runner failed", len(rows))
                self._driver._in_background(self._driver._unclaim(claim.task_name, lease))


def group_committer(
    driver: PostgresBase,
    runner: GroupRunner | None = None,
    *,
    gather_window: float | None = None,
    claims_in_commit: bool = False,
) -> GroupCommitter:
    """A queue of writes committed in groups of up to :data:`MAX_GROUP`.

    Within a group the writes run in ascending order of their instance id:
    every statement locks its instance row first, so two groups (in two
    processes) always take instance locks in the same order and cannot
    deadlock on them. A group that fails as a whole is retried write by write
    on fresh connections: a pooled connection found dead on use (server
    restart, terminated backend) fails the group without running it, and one
    bad write must not fail the others. Every write is guarded by its claim
    token or lease, so one that did commit before a connection died finds
    nothing the second time. A cancelled caller's write still commits.
    """
    return Batcher(
        GroupFlush(
            driver, runner or run_each_in_one_transaction, claims_in_commit=claims_in_commit
        ),
        name="cereal-group-commit",
        max_group=MAX_GROUP,
        retry_alone=True,
        sort_key=lambda write: write.order,
        gather_window=gather_window,
    )


async def run_each_in_one_transaction(
    conn: Conn, group: Sequence[Write], note: str | None, claims: Sequence[ClaimInCommit] = ()
) -> Committed:
    """Send the whole group as one transaction in one round trip; each statement's first row."""
    with translate("a group commit"):
        async with conn.pipeline():
            cursors = []
            async with conn.transaction():
                for write in group:
                    mine = []
                    for name, params in write.statements:
                        cur = conn.cursor(row_factory=dict_row)
                        await cur.execute(QUERIES[name], params)
                        mine.append(cur)
                    cursors.append(mine)
                if note is not None:
                    await conn.execute(QUERIES["notify"], {"note": note})
            return Committed([[await cur.fetchone() for cur in mine] for mine in cursors])


async def run_completions_merged(
    conn: Conn, group: Sequence[Write], note: str | None, claims: Sequence[ClaimInCommit] = ()
) -> Committed:
    """Complete a group of tasks, and announce them, with one set-based statement.

    Each write holds one task's ``complete_tasks`` parameters; together they become
    the arrays of ``complete_tasks``, which locks the instances in id order.
    A write's row is its task id when its report was applied, else None: the
    lease was gone, or another report on the same lease came first in the group
    (the statement applies one report per lease).
    """
    params = [dict(write.statements[0][1]) for write in group]
    merged = {
        "task_ids": [p["task_id"] for p in params],
        "leases": [p["lease"] for p in params],
        "instance_ids": [p["instance_id"] for p in params],
        "statuses": [p["status"] for p in params],
        "errors": [p["error"] for p in params],
        "results": [p["result"] for p in params],
        "error_types": [p.get("error_type") for p in params],
        "error_tracebacks": [p.get("error_traceback") for p in params],
        "traceparents": [p.get("traceparent") for p in params],
        "note": note,
    }
    with translate("completing tasks"):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(QUERIES["complete_tasks"], merged)
            applied = {row["position"]: row for row in await cur.fetchall()}
    # keyed by position, not task id: two writes may carry the same task id
    return Committed([[applied.get(position)] for position in range(1, len(params) + 1)])


async def run_decisions_merged(
    conn: Conn, group: Sequence[Write], note: str | None, claims: Sequence[ClaimInCommit] = ()
) -> Committed:
    """Apply a group of decisions with one statement (``cereal_apply_decisions``).

    Each write holds one decision's ``apply_decisions`` parameters (its own
    lists of events, task results and tasks); together they become the
    function's flat arrays. A write's row is its instance id when its decision
    was applied, else None (the claim was gone). With ``claims``, the same
    transaction then claims tasks for local runners (one round trip: a
    pipeline), and commits once.
    """
    decisions = [dict(write.statements[0][1]) for write in group]
    merged: dict[str, list[Any]] = {
        key: []
        for key in (
            "instance_ids",
            "tokens",
            "finishes",
            "payloads",
            "completed",
            "results",
            "errors",
            "event_ids",
            "result_ids",
            "task_owners",
            "task_names",
            "task_parameters",
            "task_start_after",
            "task_traceparents",
            "error_types",
            "error_tracebacks",
            "task_retry_policies",
            "task_concurrency_keys",
            "task_concurrency_limits",
            "task_rate_limit_starts",
            "task_rate_limit_seconds",
            "task_priorities",
            "task_idempotency_keys",
        )
    }
    for position, decision in enumerate(decisions, start=1):
        merged["instance_ids"].append(decision["instance_id"])
        merged["tokens"].append(decision["token"])
        merged["finishes"].append(decision["finish"])
        merged["payloads"].append(decision["payload"])
        merged["completed"].append(decision["completed"])
        merged["results"].append(decision["result"])
        merged["errors"].append(decision["error"])
        merged["error_types"].append(decision.get("error_type"))
        merged["error_tracebacks"].append(decision.get("error_traceback"))
        merged["event_ids"].extend(decision["event_ids"])
        merged["result_ids"].extend(decision["result_ids"])
        merged["task_owners"].extend([position] * len(decision["task_names"]))
        merged["task_names"].extend(decision["task_names"])
        merged["task_parameters"].extend(decision["task_parameters"])
        merged["task_start_after"].extend(decision["task_start_after"])
        merged["task_traceparents"].extend(
            decision.get("task_traceparents") or [None] * len(decision["task_names"])
        )
        merged["task_retry_policies"].extend(
            decision.get("task_retry_policies") or [None] * len(decision["task_names"])
        )
        merged["task_concurrency_keys"].extend(
            decision.get("task_concurrency_keys") or [None] * len(decision["task_names"])
        )
        for column in (
            "task_concurrency_limits",
            "task_rate_limit_starts",
            "task_rate_limit_seconds",
            "task_priorities",
            "task_idempotency_keys",
        ):
            merged[column].extend(decision.get(column) or [None] * len(decision["task_names"]))
    keys = merged.pop("task_idempotency_keys")
    # None when no task has a key: the function's fast path, no key to check
    keyed = None if all(key is None for key in keys) else keys
    params = {**merged, "task_idempotency_keys": keyed, "note": note}
    claimed: tuple[list[Row], ...] = ()
    with translate("applying decisions"):
        if claims:
            rows, claimed = await _apply_and_claim(conn, params, claims)
        else:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(QUERIES["apply_decisions"], params)
                rows = await cur.fetchall()
    # by position: a group may hold a lapsed claim's decision beside the live one's for
    # the same instance, and only the applied one is answered
    applied = {row["position"]: row for row in rows if row["position"] is not None}
    started = tuple(
        dict.fromkeys(row["started_workflow"] for row in rows if row["started_workflow"])
    )
    return Committed(
        [[applied.get(position)] for position in range(1, len(decisions) + 1)], started, claimed
    )


async def _apply_and_claim(
    conn: Conn, params: Mapping[str, Any], claims: Sequence[ClaimInCommit]
) -> tuple[list[Row], tuple[list[Row], ...]]:
    """The decisions' rows and each claim's tasks, from one transaction in one round trip.

    The claims run after the decisions (they see the tasks just added), take
    only unkeyed tasks and skip locked rows, so they wait for no lock while
    the decisions hold their instance locks; each claim has its own lease
    token, as a ``dequeue_tasks`` has (a lost answer is undone by it).
    """
    async with conn.pipeline(), conn.transaction():
        decided = conn.cursor(row_factory=dict_row)
        await decided.execute(QUERIES["apply_decisions"], params)
        cursors = []
        for claim, lease in claims:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                QUERIES["claim_unkeyed_tasks"],
                {
                    "task_name": claim.task_name,
                    "max_tasks": claim.max_tasks,
                    "lease": lease,
                    "expiry": times.seconds(claim.task_expiry, name="task_expiry"),
                    "retry_policy": claim.retry_policy,
                },
            )
            cursors.append(cur)
    rows = await decided.fetchall()
    claimed: list[list[Row]] = []
    for cur in cursors:
        # in the claim's order: lowest ready rank first (RETURNING keeps no order)
        claimed.append(sorted(await cur.fetchall(), key=lambda row: (row["ready_rank"], row["id"])))
    return rows, tuple(claimed)
