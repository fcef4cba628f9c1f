"""Dead letters: tasks that ended failed or lost (listed, requeued) and failed runs (optional)."""

from __future__ import annotations

from collections.abc import Sequence

from cereal import errors
from cereal.checks import names
from cereal.drivers._inspect_pages import NO_CURSOR, check_page, id_cursor, task_cursor
from cereal.drivers._read_operations import read_operation
from cereal.models import DeadTask, FailedRun, RequeueOutcome

MAX_REQUEUE_IDS = 1000
"""The most dead task ids one requeue call may name."""


def check_dead_task_page(
    task_name: str | None, workflow_name: str | None, limit: int | None, before: str | None
) -> None:
    """Refuse a dead-letter listing's filters or page that no store could answer.

    Raises:
        TypeError: a value has the wrong type.
        ValueError: a name is not a valid name, ``limit`` is below 1, or
            ``before`` is not a task id.
    """
    if task_name is not None:
        names.check_name(task_name, what="task name")
    if workflow_name is not None:
        names.check_name(workflow_name, what="workflow name")
    check_page(limit, task_cursor(before))


def check_failed_run_page(workflow_name: str | None, limit: int | None, before: str | None) -> None:
    """Refuse a failed-run listing's filter or page that no store could answer.

    Raises:
        TypeError: a value has the wrong type.
        ValueError: the name is invalid, ``limit`` is below 1, or ``before``
            is not a run id.
    """
    if workflow_name is not None:
        names.check_name(workflow_name, what="workflow name")
    check_page(limit, id_cursor(before, "run id"))


def check_requeue_ids(ids: Sequence[str], what: str = "task id") -> list[str]:
    """The ids (dead task ids, or failed run ids) of one requeue call, each once, in order.

    Raises:
        TypeError: ``ids`` is a str or not a sequence of str.
        ValueError: it is empty, names more than :data:`MAX_REQUEUE_IDS`
            ids, or one is not such an id (digits, no leading zero).
    """
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise TypeError(f"give a sequence of {what}s, got {type(ids).__name__}")
    if not ids:
        raise ValueError(f"no {what} given: name at least one")
    if len(ids) > MAX_REQUEUE_IDS:
        raise ValueError(f"at most {MAX_REQUEUE_IDS} {what}s per requeue, got {len(ids)}")
    for given in ids:
        if not isinstance(given, str):
            raise TypeError(f"a {what} must be a str, got {type(given).__name__}")
        if not given.isascii() or not given.isdigit() or str(int(given)) != given:
            raise ValueError(f"not a {what}: {given!r}")
        if int(given) > NO_CURSOR:
            raise ValueError(f"not a {what}: {given!r}")
    return list(dict.fromkeys(ids))


def _not_offered(driver: object, operation: str) -> errors.DriverError:
    name = type(driver).__name__
    return errors.NotOfferedError(f"{name} does not offer {operation} (dead letters)")


class DeadLetterStore:
    """Tasks that ended failed or lost, kept until requeued or trimmed with their run; failed runs.

    Optional: a driver without dead letters inherits defaults that raise
    :class:`~cereal.errors.DriverError`. A store that offers them records a
    dead task in the same transaction that stores its non-``success``
    result, keeps it while its run is live or its finished run is kept by the
    history retention (:meth:`MaintenanceStore.trim_history` removes both),
    and requeues atomically: the new task, its run's ``enqueued_tasks`` + 1
    and the dead letter's removal commit together, so a dead task is requeued
    at most once however many callers race.
    """

    @read_operation(DeadTask, check_dead_task_page)
    async def list_dead_tasks(
        self,
        *,
        task_name: str | None = None,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[DeadTask]:
        """Dead tasks, newest first, optionally of one task name and/or workflow name.

        One page: the ``limit`` (all when ``None``) newest dead tasks whose
        ``task_id`` is below ``before`` (pass the last ``task_id`` of a page
        to get the next, older one).

        Raises:
            ValueError: a name is invalid, ``limit`` is below 1, or
                ``before`` is not a task id.
        """
        raise _not_offered(self, "list_dead_tasks")

    @read_operation(FailedRun, check_failed_run_page)
    async def list_failed_runs(
        self,
        *,
        workflow_name: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[FailedRun]:
        """Finished runs that failed, newest first, optionally of one workflow name.

        Those still kept by the history retention and not requeued yet. One page: the ``limit``
        (all when ``None``) newest whose ``run_id`` is below ``before``.

        Raises:
            ValueError: the name is invalid, ``limit`` is below 1, or
                ``before`` is not a run id.
        """
        raise _not_offered(self, "list_failed_runs")

    async def requeue_failed_runs(self, run_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """Start each named failed run again: a new run of its names with its parameters.

        A failed run is requeued at most once: the new run and the failed
        run's ``requeued`` mark commit together, and a requeued run leaves
        :meth:`list_failed_runs`. While a run of the same names is live,
        nothing changes (``run_live``). ``run_ids`` are checked already
        (:func:`check_requeue_ids`): each once.

        Returns:
            Each given id with what happened to it.
        """
        raise _not_offered(self, "requeue_failed_runs")

    async def requeue_dead_tasks(self, task_ids: Sequence[str]) -> dict[str, RequeueOutcome]:
        """Queue each named dead task again, as a new task of its live run, due now.

        The new task has attempt 0 and runs under its executor's retry
        policy; its result reaches the workflow as any task's does. The
        dead letter of each requeued task is removed. ``task_ids`` are
        checked already (:func:`check_requeue_ids`): each once.

        Returns:
            Each given id with what happened to it.
        """
        raise _not_offered(self, "requeue_dead_tasks")
