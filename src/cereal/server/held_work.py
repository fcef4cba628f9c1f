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
from typing import Generic, TypeVar

from cereal import errors
from cereal.drivers.base import TaskCompleter, WorkflowCompleter
from cereal.engine.expiry import decide_expiry, warn_refused_policy
from cereal.models import ExpiredLease, TaskData

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

LOST_CLIENT_ERROR = "the worker holding the task went away (its stream to the cereal server closed)"
"""The error of an attempt whose client vanished (as the text of a LOST task's attempt)."""


class _Held(Generic[Item]):
    """Entries numbered from 0 in the order they were added; finished ones removed."""

    _what = "entry"

    def __init__(self) -> None:
        self._next = 0
        self._held: dict[int, Item] = {}

    def add(self, items: Sequence[Item]) -> int:
        """Hold ``items``; the index of the first (the rest follow)."""
        first = self._next
        self._next += len(items)
        self._held.update(zip(range(first, self._next), items, strict=True))
        return first

    def _entry(self, index: int) -> Item:
        held = self._held.get(index)
        if held is not None:
            return held
        if 0 <= index < self._next:
            raise self._finished(index)
        raise ValueError(f"no {self._what} #{index} on this stream")

    def _finished(self, index: int) -> errors.CerealError:
        raise NotImplementedError

    def finish(self, index: int) -> None:
        """Forget entry ``index`` (decided, released or reported)."""
        self._held.pop(index, None)

    @property
    def empty(self) -> bool:
        """True when nothing is held."""
        return not self._held


class HeldClaims(_Held[WorkflowCompleter]):
    """The workflow claims of one stream."""

    _what = "claim"

    def get(self, index: int) -> WorkflowCompleter:
        """The claim at ``index``.

        Raises:
            WorkflowClaimLostError: it was decided or released already.
            ValueError: no claim ``index`` was handed out on this stream.
        """
        return self._entry(index)

    def _finished(self, index: int) -> errors.CerealError:
        return errors.WorkflowClaimLostError(
            f"workflow claim #{index} was already decided or released on this stream"
        )

    async def close_all(self) -> None:
        """Release every claim still held (an undecided one rolls back)."""
        held, self._held = self._held, {}
        for completer in held.values():
            try:
                await completer.close()
            except Exception:
                logger.exception("closing a workflow claim failed")


class HeldLeases(_Held[tuple[TaskData, TaskCompleter]]):
    """The task leases of one stream."""

    _what = "lease"

    def get(self, index: int) -> TaskCompleter:
        """The lease at ``index``.

        Raises:
            TaskLostError: it was reported already.
            ValueError: no lease ``index`` was handed out on this stream.
        """
        return self._entry(index)[1]

    def _finished(self, index: int) -> errors.CerealError:
        return errors.TaskLostError(f"task lease #{index} was already reported on this stream")

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
