"""What one stream holds: workflow claims or task leases, numbered across the stream.

A batch stream (``ClaimWorkflows``, ``DequeueTasks``) holds one batch; a
session stream (``WorkflowSession``, ``TaskSession``) adds a batch per claim
request for as long as it lives. An entry leaves once it is finished (a
decision or release, a final report), so a long session holds only its live
work; a later request for a finished index gets the lost error the store
would give, and an index never handed out is a caller's mistake.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cereal import errors
from cereal.drivers.base import TaskCompleter, WorkflowCompleter
from cereal.engine.expiry import decide_expiry, warn_refused_policy
from cereal.models import ExpiredLease, TaskData

logger = logging.getLogger(__name__)

LOST_CLIENT_ERROR = "the worker holding the task went away (its stream to the cereal server closed)"
"""The error of an attempt whose client vanished (as the text of a LOST task's attempt)."""


class _Numbered:
    """Entries numbered from 0 in the order they were added; finished ones removed."""

    def __init__(self) -> None:
        self._next = 0

    def _number(self, count: int) -> range:
        first = self._next
        self._next += count
        return range(first, self._next)

    def _unknown(self, index: int, what: str) -> ValueError:
        return ValueError(f"no {what} #{index} on this stream")

    def _was_handed_out(self, index: int) -> bool:
        return 0 <= index < self._next


class HeldClaims(_Numbered):
    """The workflow claims of one stream."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[int, WorkflowCompleter] = {}

    def add(self, completers: Sequence[WorkflowCompleter]) -> int:
        """Hold ``completers``; the index of the first (the rest follow)."""
        indexes = self._number(len(completers))
        self._held.update(zip(indexes, completers, strict=True))
        return indexes.start

    def get(self, index: int) -> WorkflowCompleter:
        """The claim at ``index``.

        Raises:
            WorkflowClaimLostError: it was decided or released already.
            ValueError: no claim ``index`` was handed out on this stream.
        """
        completer = self._held.get(index)
        if completer is not None:
            return completer
        if self._was_handed_out(index):
            raise errors.WorkflowClaimLostError(
                f"workflow claim #{index} was already decided or released on this stream"
            )
        raise self._unknown(index, "claim")

    def finish(self, index: int) -> None:
        """Forget claim ``index`` (decided or released)."""
        self._held.pop(index, None)

    @property
    def empty(self) -> bool:
        """True when no claim is held."""
        return not self._held

    async def close_all(self) -> None:
        """Release every claim still held (an undecided one rolls back)."""
        held, self._held = self._held, {}
        for completer in held.values():
            try:
                await completer.close()
            except Exception:
                logger.exception("closing a workflow claim failed")


class HeldLeases(_Numbered):
    """The task leases of one stream."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[int, tuple[TaskData, TaskCompleter]] = {}

    def add(self, leased: Sequence[tuple[TaskData, TaskCompleter]]) -> int:
        """Hold ``leased``; the index of the first (the rest follow)."""
        indexes = self._number(len(leased))
        self._held.update(zip(indexes, leased, strict=True))
        return indexes.start

    def get(self, index: int) -> TaskCompleter:
        """The lease at ``index``.

        Raises:
            TaskLostError: it was reported already.
            ValueError: no lease ``index`` was handed out on this stream.
        """
        held = self._held.get(index)
        if held is not None:
            return held[1]
        if self._was_handed_out(index):
            raise errors.TaskLostError(f"task lease #{index} was already reported on this stream")
        raise self._unknown(index, "lease")

    def finish(self, index: int) -> None:
        """Forget lease ``index`` (its final report was applied, or the lease is gone)."""
        self._held.pop(index, None)

    @property
    def empty(self) -> bool:
        """True when no lease is held."""
        return not self._held

    def leave_unreported(self) -> None:
        """Leave the unreported leases in the store for their clients to re-present."""
        kept = [task.metadata.task_id for task, _ in self._held.values()]
        self._held = {}
        if kept:
            logger.info("server stopping: task leases %s stay for their clients", kept)

    async def abandon_unreported(self) -> None:
        """End the leases of a stream that closed without reporting them.

        Its client is gone, exactly as when a lease expires: a task whose stored
        policy leaves attempts is queued again after its backoff, the rest are
        reported LOST to their workflows at once.
        """
        held, self._held = self._held, {}
        for task, completer in held.values():
            meta = task.metadata
            lease = ExpiredLease(
                task_id=meta.task_id,
                lease=completer.lease_token or "",
                attempt=meta.attempt,
                task_name=task.name,
                workflow_name=meta.workflow_name,
                instance_name=meta.instance_name,
                retry_policy=task.retry_policy,
            )
            # as a sweep decides: an invalid stored policy gives no retry, and is logged
            decision = decide_expiry(lease)
            try:
                if decision.delay is not None:
                    await completer.retry(LOST_CLIENT_ERROR, decision.delay)
                else:
                    await completer.abandon()
                    warn_refused_policy(lease, decision)
            except errors.TaskLostError:
                pass
            except Exception:
                logger.exception("ending an unreported task lease failed")
