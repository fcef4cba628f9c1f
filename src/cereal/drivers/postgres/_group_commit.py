"""Group commit on PostgreSQL: writes that arrive together share one transaction.

Task completions and workflow decisions are small writes made by many
coroutines at once. Each one on its own transaction costs a commit (a WAL
flush) and a few round trips; instead they queue on a shared
:class:`~cereal.drivers._batching.Batcher` (no timer, one group in flight,
each caller resumed after the commit holding its write, a failed group
retried write by write) and this module commits each group: completions
merged into one ``complete_tasks`` statement, decisions into one
``cereal_apply_decisions`` call, new runs into one ``enqueue_workflows``
statement, releases of claims as one pipelined transaction. A decision group
that adds tasks an idle runner of this process promised to take also claims
them for it, in the same transaction (``apply_decisions_and_claim``), and
hands them over after the commit. Within a group
the writes run in ascending order of their instance id: every statement
locks its instance row first, so two groups (in two processes) always take
instance locks in the same order and cannot deadlock on them (new runs are
inserted in name order, for the same reason).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from psycopg.rows import dict_row

from cereal.checks import times
from cereal.drivers._batching import Batcher
from cereal.drivers._lifecycle import ClaimingPromise, ClaimTerms, LocalPromise
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
    claimed: tuple[Row, ...] = ()
    """The tasks the group's claim took (a ``claim_tasks`` row each), in claim order."""


@dataclass(frozen=True)
class TaskClaim:
    """A claim of a promising runner's tasks, made in a decision group's transaction."""

    promise: ClaimingPromise
    terms: ClaimTerms
    lease: uuid.UUID
    expiry: float


GroupRunner = Callable[[Conn, Sequence[Write], str | None], Awaitable[Committed]]
"""Commits one group on a connection: each write's rows, and the runs it started."""


class ClaimingGroupRunner(Protocol):
    """A :data:`GroupRunner` that also makes a :class:`TaskClaim` in the group's transaction."""

    def __call__(
        self, conn: Conn, group: Sequence[Write], note: str | None, claim: TaskClaim | None, /
    ) -> Awaitable[Committed]:
        """Commit ``group`` (and ``claim``, when given); each write's rows and the tasks taken."""


GroupCommitter = Batcher[Write, list[Row | None]]
"""The queue of one kind of write; each caller gets the first row of each of its statements."""


class GroupFlush:
    """Commits a group of writes on one pooled connection, then wakes this process.

    Args:
        driver: the connections and wakeups.
        runner: sends the group (one statement per write, or one merged statement).
        claiming: sends the group with a claim for an idle local runner that
            promised to take tasks the group adds (decisions only); when given,
            it is used instead of ``runner``.
    """

    def __init__(
        self,
        driver: PostgresBase,
        runner: GroupRunner,
        claiming: ClaimingGroupRunner | None = None,
    ) -> None:
        self._driver = driver
        self.runner = runner
        self.claiming = claiming

    async def __call__(self, group: Sequence[Write]) -> list[list[Row | None]]:
        """Commit ``group``; each write's rows.

        Raises:
            DriverError: the group did not commit.
        """
        announce = [wake for write in group for wake in write.announce]
        # tasks an idle local runner promises to take are not NOTIFYed: every
        # listening session pays a commit for each notification it receives
        elsewhere, promises = self._driver._promise_locally(announce)
        note = self._driver._note(elsewhere)
        claim: TaskClaim | None = None
        try:
            if self.claiming is None:
                async with self._driver._connection("a group commit") as conn:
                    committed = await self.runner(conn, group, note)
            else:
                claim = _claim_for(promises)
                committed = await self._commit_claiming(self.claiming, group, note, claim)
                if claim is not None:
                    # committed: from here on nothing may fail the group's decisions
                    await self._deliver(claim, committed.claimed)
        finally:
            for promise in promises:
                promise.settle()
        if claim is not None and len(committed.claimed) < claim.terms.max_tasks:
            # the claim came back short: a wakeup for its name would send this process's
            # runners to claim what it could not take (it took every task it could)
            announce = [wake for wake in announce if wake != ("task", claim.terms.task_name)]
        # runs a finished run's end started from waiting for their key: announced after
        # the commit, best effort (a failure must not fail decisions that committed;
        # other processes still poll)
        started: list[Wake] = [("workflow", name) for name in committed.started]
        later = self._driver._note(started)
        if later is not None:
            await self._driver._send_note(later)
        self._driver._wake_all([*announce, *started])
        return committed.rows

    async def _commit_claiming(
        self,
        runner: ClaimingGroupRunner,
        group: Sequence[Write],
        note: str | None,
        claim: TaskClaim | None,
    ) -> Committed:
        """Commit ``group`` with ``claim`` on a pooled connection.

        When it fails or is cancelled after the statement was sent (a lost
        connection, say), whether the claim committed is unknown: it is given
        back by its lease in the background (a no-op if it did not commit),
        so its tasks never wait for their expiry.
        """
        try:
            async with self._driver._connection("a group commit") as conn:
                return await runner(conn, group, note, claim)
        except BaseException:
            if claim is not None:
                self._driver._in_background(
                    self._driver._unclaim(claim.terms.task_name, claim.lease)
                )
            raise

    async def _deliver(self, claim: TaskClaim, rows: Sequence[Row]) -> None:
        """Hand the committed claim's tasks to their runner; never raises but a cancel.

        The group's decisions are committed: a failure here must not fail
        them (the Batcher would retry each alone and answer "claim lost").
        Tasks the runner did not take are given back by the claim's lease.
        """
        try:
            tasks = [self._driver._leased_task(row) for row in rows]
            await claim.promise.deliver(tasks)
        except BaseException as failure:
            # nobody will run them: queue them again rather than wait for their expiry
            if rows:
                await asyncio.shield(self._driver._unclaim(claim.terms.task_name, claim.lease))
            if isinstance(failure, asyncio.CancelledError):
                raise
            logger.error(
                "handing %d claimed %r task(s) to their runner failed; given back to the queue",
                len(rows),
                claim.terms.task_name,
                exc_info=True,
            )


def _claim_for(promises: Sequence[LocalPromise]) -> TaskClaim | None:
    """The claim of the first promise that takes claimed tasks: one task name a group.

    One name only: a claim takes that name's concurrency-key locks in lock
    order after the group's instance locks, and two names' keys could be
    taken in opposite orders by two groups.
    """
    for promise in promises:
        if isinstance(promise, ClaimingPromise):
            terms = promise.claim_terms()
            if terms is not None and terms.max_tasks > 0:
                expiry = times.seconds(terms.task_expiry, name="task_expiry")
                return TaskClaim(promise, terms, uuid.uuid4(), expiry)
    return None


def group_committer(
    driver: PostgresBase,
    runner: GroupRunner | None = None,
    *,
    gather_window: float | None = None,
    claiming: ClaimingGroupRunner | None = None,
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
    ``claiming`` (decisions) also claims the tasks an idle local runner
    promised to take, in the group's transaction (see :class:`GroupFlush`).
    """
    return Batcher(
        GroupFlush(driver, runner or run_each_in_one_transaction, claiming),
        name="cereal-group-commit",
        max_group=MAX_GROUP,
        retry_alone=True,
        sort_key=lambda write: write.order,
        gather_window=gather_window,
    )


async def run_each_in_one_transaction(
    conn: Conn, group: Sequence[Write], note: str | None
) -> Committed:
    """Send the whole group as one transaction in one pipeline; each statement's first row.

    psycopg syncs a pipeline as a ``transaction()`` inside it begins and ends,
    so this is three round trips, whatever the number of statements.
    """
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


async def run_completions_merged(conn: Conn, group: Sequence[Write], note: str | None) -> Committed:
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
    # keyed by position, not task id: two writes may carry the same task id
    return await _rows_by_position(
        conn, QUERIES["complete_tasks"], merged, len(params), "completing tasks"
    )


async def _rows_by_position(
    conn: Conn, query: str, merged: Mapping[str, Any], writes: int, what: str
) -> Committed:
    """Run a merged ``query`` whose rows carry their write's ``position`` (from 1)."""
    with translate(what):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, merged)
            found = {row["position"]: row for row in await cur.fetchall()}
    return Committed([[found.get(position)] for position in range(1, writes + 1)])


async def run_enqueues_merged(conn: Conn, group: Sequence[Write], note: str | None) -> Committed:
    """Create a group of new runs, and announce them, with one set-based statement.

    Each write holds one caller's ``enqueue_workflow`` parameters (a lone
    write runs that statement itself). A write's row is its new instance's
    id, or None when the names were live (or an earlier write of the group
    named the same run).
    """
    params = [write.statements[0][1] for write in group]
    if len(params) == 1:
        # a lone enqueue (no concurrent callers): the one-row statement, cheaper to run
        with translate("enqueuing a workflow"):
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(QUERIES["enqueue_workflow"], {**params[0], "note": note})
                return Committed([[await cur.fetchone()]])
    merged = {
        "workflow_names": [p["workflow_name"] for p in params],
        "instance_names": [p["instance_name"] for p in params],
        "parameters": [p["parameters"] for p in params],
        "traceparents": [p["traceparent"] for p in params],
        "note": note,
    }
    return await _rows_by_position(
        conn, QUERIES["enqueue_workflows"], merged, len(params), "enqueuing workflows"
    )


async def run_decisions_merged(
    conn: Conn, group: Sequence[Write], note: str | None, claim: TaskClaim | None = None
) -> Committed:
    """Apply a group of decisions with one statement (``cereal_apply_decisions``).

    Each write holds one decision's ``apply_decisions`` parameters (its own
    lists of events, task results and tasks); together they become the
    function's flat arrays. A write's row is its instance id when its decision
    was applied, else None (the claim was gone). With ``claim``, the same
    statement then claims tasks for a promising local runner
    (``apply_decisions_and_claim``); they come back in ``claimed``.
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
    params: dict[str, Any] = {**merged, "task_idempotency_keys": keyed, "note": note}
    if claim is None:
        query = QUERIES["apply_decisions"]
    else:
        query = QUERIES["apply_decisions_and_claim"]
        params.update(
            claim_task_name=claim.terms.task_name,
            claim_max_tasks=claim.terms.max_tasks,
            claim_lease=claim.lease,
            claim_expiry=claim.expiry,
            claim_retry_policy=claim.terms.retry_policy,
        )
    with translate("applying decisions"):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            rows = await cur.fetchall()
    claimed = [_claimed_task(row) for row in rows if row.get("claimed_id") is not None]
    # in the claim's order: lowest ready rank first (as a dequeue orders them)
    claimed.sort(key=lambda row: (row["ready_rank"], row["id"]))
    # by position: a group may hold a lapsed claim's decision beside the live one's for
    # the same instance, and only the applied one is answered
    applied = {row["position"]: row for row in rows if row["position"] is not None}
    started = tuple(
        dict.fromkeys(row["started_workflow"] for row in rows if row["started_workflow"])
    )
    return Committed(
        [[applied.get(position)] for position in range(1, len(decisions) + 1)],
        started,
        tuple(claimed),
    )


def _claimed_task(row: Row) -> Row:
    """A claimed task's row of ``apply_decisions_and_claim``, as ``claim_tasks`` names it."""
    prefix = "claimed_"
    return {key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)}
