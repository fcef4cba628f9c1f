"""The single-task pattern: a workflow that runs one task and ends with its outcome.

The workflow enqueues one task named like the workflow, with the workflow's
parameters passed through unchanged. The task's return value becomes the
workflow's result; a task that raises (or is lost) fails the workflow with
the task's error text.

Example::

    def resize(task: cereal.Task) -> dict[str, int]:
        return {"width": task.get_parameters()["width"] // 2}

    register_single_task_workflow_executor(manager, "resize", resize, workers=4, timeout=30)
    await manager.enqueue_workflow("resize", "img-1", {"width": 800})
"""

from __future__ import annotations

import logging
from datetime import timedelta

from cereal.executors import TaskExecutor, TaskFunction
from cereal.instance import CancelEvent, Decision, StartEvent, TaskCompleteEvent, WorkflowInstance
from cereal.manager import Manager
from cereal.retry import RetryPolicy

logger = logging.getLogger(__name__)

CANCELLED = "cancelled"
"""The failure text of a single-task workflow cancelled with ``allow_cancel=True``."""


class SingleTaskWorkflowExecutor:
    """A workflow executor that runs one task named ``task_name`` and ends with its outcome.

    With ``allow_cancel`` a cancel fails the workflow with :data:`CANCELLED`
    (the engine then cancels the running task); without it a cancel is
    ignored and the task runs to its end.

    Example::

        manager.register_workflow_executor("report", SingleTaskWorkflowExecutor("report"))
        manager.register_task_executor("report", build_report)
    """

    def __init__(self, task_name: str, allow_cancel: bool = False) -> None:
        """Run the task ``task_name``; honour cancels only if ``allow_cancel``."""
        self.task_name = task_name
        self.allow_cancel = allow_cancel

    def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Enqueue the task with the workflow's parameters."""
        w.enqueue_task(self.task_name, w.get_parameters())
        return w.continue_()

    def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Complete with the task's result, or fail with its error text."""
        failure = ev.result.err()
        if failure is not None:
            return w.fail(failure)
        return w.complete(ev.result.get())

    def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Fail with :data:`CANCELLED` if cancels are allowed, else keep running."""
        if self.allow_cancel:
            return w.fail(CANCELLED)
        logger.info(
            "workflow %s/%s ignores the cancel (allow_cancel=False)",
            w.workflow_name,
            w.instance_name,
            extra={"event": "cancel_ignored", "workflow_name": w.workflow_name},
        )
        return w.continue_(w.get_payload())


def register_single_task_workflow_executor(
    manager: Manager,
    workflow_name: str,
    executor: TaskExecutor | TaskFunction,
    *,
    allow_cancel: bool = False,
    workers: int = 1,
    timeout: float | timedelta | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Register ``executor`` as a workflow of one task, both named ``workflow_name``.

    ``workers``, ``timeout`` and ``retry`` apply to the task executor, as in
    :meth:`~cereal.Manager.register_task_executor` (the original ignored the
    first two): with a :class:`~cereal.RetryPolicy` the workflow ends with the
    task's last attempt.

    Raises:
        RuntimeError: after ``manager.start()``, or the name is taken (as a
            workflow or as a task).
        ValueError / TypeError: a bad name, worker count, timeout, retry
            policy or executor.
    """
    manager.register_task_executor(
        workflow_name, executor, workers=workers, timeout=timeout, retry=retry
    )
    manager.register_workflow_executor(
        workflow_name, SingleTaskWorkflowExecutor(workflow_name, allow_cancel)
    )
