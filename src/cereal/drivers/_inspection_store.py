"""Read-only inspection for the CLI, the dashboard and metrics (optional for a driver)."""

from __future__ import annotations

from cereal import errors
from cereal.checks import names, validation
from cereal.drivers._inspect_pages import check_page, task_cursor
from cereal.drivers._read_operations import read_operation
from cereal.drivers._throughput import check_throughput
from cereal.models import (
    InstanceEvent,
    InstanceTask,
    QueueDepth,
    RetentionRule,
    StartKey,
    TaskQueueStats,
    ThroughputBucket,
)


def _instance_task_page(
    workflow_name: str, instance_name: str, limit: int | None, before: str | None
) -> None:
    validation.check_pair(workflow_name, instance_name)
    check_page(limit, task_cursor(before))


def _instance_event_page(
    workflow_name: str, instance_name: str, limit: int | None, before: int | None
) -> None:
    validation.check_pair(workflow_name, instance_name)
    check_page(limit, before)


def _task_name_page(task_name: str, limit: int | None, before: str | None) -> None:
    names.check_name(task_name, what="task name")
    check_page(limit, task_cursor(before))


def _instance_pair(workflow_name: str, instance_name: str) -> None:
    validation.check_pair(workflow_name, instance_name)


def _throughput_window(bucket_seconds: int, buckets: int, until: float | None) -> None:
    check_throughput(bucket_seconds, buckets, until)


def _not_offered(driver: object, operation: str) -> errors.DriverError:
    name = type(driver).__name__
    return errors.NotOfferedError(f"{name} does not offer {operation} (inspection)")


class InspectionStore:
    """An instance's tasks and event history, per-name queue statistics and depths.

    Optional: a driver that offers no inspection inherits defaults that raise
    :class:`~cereal.errors.DriverError` naming the driver (``queue_depths``
    reports nothing); the engine itself never needs these. Each is a read-only
    operation (:func:`~cereal.drivers._read_operations.read_operation`): the
    Manager and ``cereal serve`` check its arguments with the check declared
    here, and the gRPC driver carries it without code of its own.
    """

    # ---- read-only inspection (dashboard) ----------------------------------------------

    @read_operation(InstanceTask, _instance_task_page)
    async def list_instance_tasks(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[InstanceTask]:
        """The queued and running tasks of the live instance, in enqueue order.

        Empty when no instance with these names is live. With ``limit`` or
        ``before`` the answer is one page, newest first: the ``limit`` (all
        when ``None``) newest tasks enqueued before the task whose
        ``task_id`` is ``before`` (keyset paging: pass the last ``task_id`` of
        a page to get the next, older one). Callers pass them only when set,
        so a driver written before paging keeps working for full listings.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is not one of this
                driver's task ids.
        """
        raise _not_offered(self, "list_instance_tasks")

    @read_operation(InstanceEvent, _instance_event_page)
    async def list_instance_events(
        self,
        workflow_name: str,
        instance_name: str,
        *,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[InstanceEvent]:
        """The event history of one run of these names, oldest first.

        The live instance's events, else those of the newest finished run still
        kept by the retention policy (empty when there is neither): handled
        events and, marked ``pending``, those still waiting for a decision.
        With ``limit`` or ``before`` the answer is one page, newest first: the
        ``limit`` (all when ``None``) newest events whose ``seq`` is below
        ``before`` (pass the last ``seq`` of a page to get the next, older
        one); events arriving meanwhile never shift the older pages.

        Raises:
            ValueError: ``limit`` is below 1 or ``before`` below 0.
        """
        raise _not_offered(self, "list_instance_events")

    @read_operation(InstanceTask, _task_name_page)
    async def list_tasks(
        self, task_name: str, *, limit: int | None = None, before: str | None = None
    ) -> list[InstanceTask]:
        """The queued and running tasks named ``task_name``, of every live instance.

        Without ``limit`` and ``before``: all of them, in enqueue order. With
        either: one page, newest first, of the ``limit`` newest such tasks
        enqueued before the task whose ``task_id`` is ``before`` (keyset
        paging, as :meth:`list_instance_tasks`). Each names its instance.

        Raises:
            ValueError: ``limit`` is below 1, or ``before`` is not one of this
                driver's task ids.
        """
        raise _not_offered(self, "list_tasks")

    @read_operation(TaskQueueStats)
    async def task_queue_stats(self) -> list[TaskQueueStats]:
        """One entry per task name with queued or running tasks, ordered by name."""
        raise _not_offered(self, "task_queue_stats")

    @read_operation(QueueDepth)
    async def queue_depths(self) -> list[QueueDepth]:
        """Read-only: the ready work per task name and per workflow name, for metrics.

        One entry per name with ready work (none for an idle name): queued
        tasks due now, and live unclaimed instances with pending events, each
        with the enqueue time of its oldest item. Drivers answer from their
        claim indexes, so the cost follows the queues, never the history.
        This default reports nothing (a driver that cannot tell).
        """
        return []

    @read_operation(StartKey, _instance_pair)
    async def list_start_keys(self, workflow_name: str, instance_name: str) -> list[StartKey]:
        """The idempotency keys that started runs of this instance name, while kept.

        Newest first, each with its run's start time as ``created_at``. A key
        is kept for ``START_KEY_WINDOW`` (24 hours) after the run it started
        was created, then trimmed with the history; earlier runs' keys are
        listed too (``models.key_that_started`` picks one run's).

        Raises:
            ValueError / TypeError: a bad name.
        """
        raise _not_offered(self, "list_start_keys")

    @read_operation(RetentionRule)
    async def applied_retention(self) -> list[RetentionRule]:
        """The history retention the sweeps last applied to this store, as its rules.

        The store-wide rule first, then one per workflow name, each with when
        a sweep first applied that retention; empty until a sweep has trimmed.
        With Managers of different retentions on one store, the last sweep's.
        """
        raise _not_offered(self, "applied_retention")

    @read_operation(ThroughputBucket, _throughput_window)
    async def run_throughput(
        self, bucket_seconds: int, buckets: int, *, until: float | None = None
    ) -> list[ThroughputBucket]:
        """Finished runs per time bucket, completed and failed apart, oldest bucket first.

        Exactly ``buckets`` entries of ``bucket_seconds`` each (empty ones
        count zero), aligned to whole multiples of ``bucket_seconds`` since the
        epoch; the last holds ``until`` (seconds since the epoch; ``None``: the
        store's clock now). Drivers count from their end-time indexes within
        the window, so the cost follows the runs that ended in it. Finished
        runs the history retention trimmed are no longer counted.

        Raises:
            TypeError: ``bucket_seconds`` or ``buckets`` is not an int, or
                ``until`` not a number.
            ValueError: ``bucket_seconds`` is not from 1 to a week, ``buckets``
                not from 1 to 1000, their product above a year, or ``until``
                negative or not finite.
        """
        raise _not_offered(self, "run_throughput")
