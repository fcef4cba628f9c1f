"""The workflow side of the driver contract: instances, their events and claims."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from cereal import errors
from cereal.checks import names, validation
from cereal.drivers._read_operations import read_operation
from cereal.drivers._task_store import DEFAULT_TASK_EXPIRY
from cereal.models import (
    FailureDetails,
    ListWorkflowFilter,
    NewTask,
    TaskKey,
    WorkflowEvent,
    WorkflowInstanceData,
)

WAITING_KEYS_PER_SWEEP = 100
"""Workflow concurrency keys with waiting runs one sweep looks at (the next goes on after)."""

MAX_TASK_KEY_LOOKUP = 1000
"""The most task idempotency keys one :meth:`WorkflowStore.list_task_keys` call asks about."""


def _task_key_lookup(workflow_name: str, instance_name: str, keys: Sequence[str]) -> None:
    validation.check_pair(workflow_name, instance_name)
    if isinstance(keys, str | bytes) or not isinstance(keys, Sequence):
        raise TypeError(f"keys must be a list of str, got {type(keys).__name__}")
    if len(keys) > MAX_TASK_KEY_LOOKUP:
        raise ValueError(f"keys holds {len(keys)} keys; at most {MAX_TASK_KEY_LOOKUP} at once")
    for key in keys:
        names.check_name(key, what="task idempotency key")


ClaimedWorkflow = tuple[list[WorkflowEvent], "WorkflowCompleter"]
"""One claimed instance: its events in sequence order, and the completer that decides them."""


class WorkflowCompleter(abc.ABC):
    """Holds the claimed event(s) of one instance until a decision is applied or it is closed.

    A claim holds one event (:meth:`Driver.dequeue_workflow`) or a batch of
    them (:meth:`Driver.claim_workflows`). Exactly one of :meth:`continue_`,
    :meth:`done` or :meth:`fail` may be called, for the whole batch;
    afterwards (or without any) :meth:`close` releases the claim. A completer
    closed without a decision rolls back: every claimed event is redelivered.
    """

    @abc.abstractmethod
    async def continue_(self, payload: bytes | None, tasks: Sequence[NewTask]) -> None:
        """Apply a continue decision atomically.

        Consume every claimed event (and the task results they refer to),
        store the payload, mark the instance ``running``, set the completed
        count to the last claimed event's ``completed_task_count``, and insert
        ``tasks`` in order, adding to the enqueued count those inserted: a task
        whose ``idempotency_key`` the run already holds (see
        :meth:`WorkflowStore.list_task_keys`), or that an earlier task of
        ``tasks`` has, is not inserted.

        Raises:
            WorkflowClaimLostError: the instance ended (killed) or the claim
                expired meanwhile; nothing was stored.
        """

    @abc.abstractmethod
    async def done(self, result: bytes | None) -> None:
        """Finish the instance with ``result``.

        Write a history row and delete the live instance with its events,
        tasks and unconsumed task results.

        Raises:
            WorkflowClaimLostError: as for :meth:`continue_`.
        """

    @abc.abstractmethod
    async def fail(self, error: str) -> None:
        """Finish the instance with the error text ``error`` (as :meth:`done`).

        Raises:
            WorkflowClaimLostError: as for :meth:`continue_`.
        """

    async def fail_with_details(self, failure: FailureDetails) -> None:
        """Finish the instance with ``failure``'s text, exception type and traceback.

        This default keeps only the text (:meth:`fail`); drivers that store
        the type and traceback with the history row override it.

        Raises:
            WorkflowClaimLostError: as for :meth:`continue_`.
        """
        await self.fail(failure.error)

    async def heartbeat(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Keep the claim alive during a long callback (drivers with claim leases)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the event; roll back if no decision was applied. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def check_claim_sizes(max_instances: int, max_events: int) -> None:
    """Refuse a claim for fewer than one instance or event.

    Raises:
        ValueError: ``max_instances`` or ``max_events`` is below 1.
    """
    if max_instances < 1 or max_events < 1:
        raise ValueError("claim_workflows needs max_instances >= 1 and max_events >= 1")


class WorkflowStore(abc.ABC):
    """Live workflow instances: enqueue, claim events and decide, cancel, kill, look up."""

    # ---- workflow instances -----------------------------------------------------

    @abc.abstractmethod
    async def enqueue_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """Create a live instance and its ``start`` event atomically.

        ``traceparent`` (the enqueue's span, when traced) is stored with the
        instance and handed back in every claim of it
        (``WorkflowInstanceData.traceparent``).

        Raises:
            WorkflowInstanceExistsError: a live instance with these names exists;
                nothing was stored.
        """

    async def enqueue_workflow_in_transaction(
        self,
        connection: object,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        *,
        traceparent: str | None = None,
    ) -> None:
        """As :meth:`enqueue_workflow`, on the caller's open transaction ``connection``.

        The instance exists if and only if the caller commits; the driver
        neither commits nor rolls back, and arranges for workers to be woken
        by the commit. This default refuses: the driver's store is not
        reachable through a caller's connection.

        Raises:
            TypeError: always here; a driver that supports it names the
                connection types it takes.
        """
        raise TypeError(
            f"{type(self).__name__} cannot enqueue on a caller's connection: transactional "
            "enqueue needs the SQLite driver (a sqlite3.Connection) or the PostgreSQL driver "
            "(a psycopg Connection or AsyncConnection)"
        )

    @abc.abstractmethod
    async def claim_workflows(
        self,
        workflow_names: Sequence[str],
        *,
        max_instances: int = 1,
        max_events: int = 1,
        claim_expiry: float = DEFAULT_TASK_EXPIRY,
    ) -> list[ClaimedWorkflow]:
        """Claim up to ``max_instances`` unclaimed instances, each with up to ``max_events`` events.

        Instances whose oldest ready event is oldest come first, and each
        claimed instance comes with its oldest events in sequence order. For
        a ``task_complete`` event the task result is consumed with the event
        (a missing result gives status ``UNUSABLE_RESULT``). Each event's
        ``completed_task_count`` includes the ``task_complete`` events up to
        and including it; ``enqueued_task_count`` is the stored count (the
        caller adds what earlier callbacks of the batch enqueued). One
        completer decides the whole batch of an instance. Returns an empty
        list when nothing is ready; refuses sizes below 1
        (:func:`check_claim_sizes`).

        ``claim_expiry`` is the claimer's own expiry: a driver whose claims
        can outlive a crashed claimer stores it with the claim, and the
        sweep releases the claim only once that long has passed since its
        last heartbeat, whatever expiry the sweeping process uses.
        """

    async def dequeue_workflow(
        self, workflow_names: Sequence[str], *, claim_expiry: float = DEFAULT_TASK_EXPIRY
    ) -> tuple[WorkflowEvent, WorkflowCompleter]:
        """Claim the oldest event (by sequence) of any unclaimed instance of these names.

        The one-event form of :meth:`claim_workflows` (the Go API's dequeue).

        Raises:
            NoWorkflowInstancesError: nothing is ready.
        """
        claimed = await self.claim_workflows(workflow_names, claim_expiry=claim_expiry)
        if not claimed:
            raise errors.NoWorkflowInstancesError()
        [([event], completer)] = claimed
        return event, completer

    @abc.abstractmethod
    async def cancel_workflow(self, workflow_name: str, instance_name: str) -> None:
        """Append a ``cancel`` event to the live instance.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """

    @abc.abstractmethod
    async def kill_workflow(self, workflow_name: str, instance_name: str, error: str) -> None:
        """Finish the live instance at once with ``error``; no callback runs.

        Raises:
            WorkflowInstanceNotFoundError: no live instance.
        """

    @abc.abstractmethod
    async def get_workflow_instance(
        self, workflow_name: str, instance_name: str
    ) -> WorkflowInstanceData:
        """The live instance if any, else the newest finished run.

        Raises:
            WorkflowInstanceNotFoundError: neither exists.
        """

    @abc.abstractmethod
    async def list_workflow_instances(
        self, where: ListWorkflowFilter
    ) -> list[WorkflowInstanceData]:
        """One entry per (workflow, instance) pair: the live row, else the newest finished run.

        Sorted by workflow name, then instance name, and cut to the window
        ``where.offset`` / ``where.limit`` of that order (:meth:`ListWorkflowFilter.page`).
        """

    async def enqueue_keyed_workflow(
        self,
        workflow_name: str,
        instance_name: str,
        parameters: bytes | None,
        concurrency_key: str,
        concurrency_limit: int,
        *,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> str | None:
        """Create a run under a workflow concurrency key, started now or when its turn comes.

        As :meth:`enqueue_workflow` (the live instance and its start event, in
        one transaction), but of the live runs carrying ``concurrency_key``, at
        most ``concurrency_limit`` are *started*: when as many are, this one
        is created waiting (``waiting_for_key``; its events are not delivered,
        a cancel waits with them). Whenever a started run of the key ends
        (completes, fails, is killed), in the same transaction the oldest
        waiting runs of the key are started while fewer than their own limit
        are. The count and the start are made under a lock of the key, so
        racing enqueues and endings never start more than the limit.

        With ``idempotency_key``: as :meth:`StartKeyStore.enqueue_workflow_once`
        (returns the instance name the key started within the window, else
        ``None``). Optional: this default raises.

        Raises:
            WorkflowInstanceExistsError: a live instance with these names exists.
            NotOfferedError: the driver keeps no workflow concurrency keys.
        """
        raise errors.NotOfferedError(
            f"{type(self).__name__} does not offer workflow concurrency keys"
        )

    @read_operation(TaskKey, _task_key_lookup)
    async def list_task_keys(
        self, workflow_name: str, instance_name: str, keys: Sequence[str]
    ) -> list[TaskKey]:
        """Of ``keys``, the task idempotency keys the live run of these names holds.

        Each with the id of the task that holds it (the task may have ended);
        empty when no run of these names is live. A run holds a key from the
        decision that stored its task until the run ends, and decisions store
        no second task with it. The engine asks this while it holds the run's
        claim, so the answer stays true until its decision is applied.

        Optional, with :attr:`NewTask.idempotency_key` in decisions: this
        default raises, and the engine then fails a run that enqueues a keyed
        task (it cannot promise the key) rather than store a duplicate.

        Raises:
            ValueError / TypeError: a bad name, or ``keys`` not a list of at
                most :data:`MAX_TASK_KEY_LOOKUP` keys.
            NotOfferedError: the driver keeps no task idempotency keys.
        """
        raise errors.NotOfferedError(
            f"{type(self).__name__} does not offer task idempotency keys (list_task_keys)"
        )
