"""Errors raised by cereal.

Every error is a :class:`CerealError`::

    CerealError
    ├── WorkflowInstanceExistsError      enqueue while that (workflow, instance) is live
    ├── WorkflowScheduleExistsError      create a schedule whose names are taken
    ├── InvalidScheduleError             a recurrence that does not parse or never fires
    ├── WorkflowInstanceNotFoundError    cancel / kill / get of an unknown instance
    ├── WorkflowScheduleNotFoundError    get / update / delete of an unknown schedule
    ├── WorkflowNotCompleteError         get_result() while the instance still runs
    ├── WorkflowFailedError              get_result() of a failed instance
    ├── TaskLostError                    a task's lease was lost; its outcome is dropped
    ├── TaskFailedError                  TaskResult.err() of a failed task (text only)
    ├── UnusableTaskResultError          TaskResult.err() when the stored result vanished
    ├── WorkflowClaimLostError           a workflow event's claim expired before its decision
    ├── DriverError                      the storage is unavailable or misbehaved
    │   └── MissingDependencyError       a driver's optional packages are not installed
    ├── NoTasksError                     (driver-facing) no task is ready
    ├── NoWorkflowInstancesError         (driver-facing) no workflow event is ready
    ├── NoDueWorkflowsError              (driver-facing) no schedule is due
    └── NoScheduledWorkflowsError        (driver-facing) no schedule is enabled

Bad arguments raise the builtin ``ValueError`` / ``TypeError`` and lifecycle
misuse raises ``RuntimeError``, as the API contract says.
"""

from __future__ import annotations


class CerealError(Exception):
    """Root of every error that cereal raises on purpose."""

    default_message = "cereal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.default_message)


class WorkflowInstanceExistsError(CerealError):
    """A live instance with this workflow name and instance name already exists."""

    default_message = "workflow instance already exists"


class WorkflowScheduleExistsError(CerealError):
    """A schedule with this workflow name and instance name already exists."""

    default_message = "workflow schedule already exists"


class InvalidScheduleError(CerealError):
    """The recurrence rule does not parse, or it has no occurrence left."""

    default_message = "workflow schedule is not valid"


class WorkflowInstanceNotFoundError(CerealError):
    """No live or finished instance with these names exists."""

    default_message = "workflow instance not found"


class WorkflowScheduleNotFoundError(CerealError):
    """No schedule with these names exists."""

    default_message = "workflow schedule not found"


class WorkflowNotCompleteError(CerealError):
    """The instance is still running, so it has no result yet."""

    default_message = "workflow instance is still running"


class WorkflowFailedError(CerealError):
    """The instance failed; ``str()`` of this error is the stored error text."""

    default_message = "workflow failed"


class TaskLostError(CerealError):
    """The task lost its lease (expired, its workflow ended, or the Manager stopped)."""

    default_message = "task lost before reporting its status"


class WorkflowClaimLostError(CerealError):
    """A workflow event's claim expired or its instance ended before the decision committed."""

    default_message = "workflow event claim lost before the decision was applied"


class RequestTooLargeError(CerealError):
    """A decision or report is larger than the driver can carry; nothing was sent.

    A ``grpc://`` client sends at most ``max_message_bytes`` per request (the
    server's ``--max-message-size``). The workflow runner fails the instance
    with this error's text rather than retrying a decision that can never fit.
    """


class DriverError(CerealError):
    """The storage backend is unavailable or failed; the cause is chained."""

    default_message = "storage driver error"


class NotOfferedError(DriverError):
    """The driver, or the ``cereal serve`` behind it, does not offer this operation.

    An optional part of the driver contract that this driver leaves out, or
    a call an older server release does not know.
    """

    default_message = "the driver does not offer this operation"


class MissingDependencyError(DriverError, ImportError):
    """A driver needs optional packages that are not installed (say, the ``postgres`` extra).

    Also an :class:`ImportError`, so code that guards an optional import keeps working;
    the message says what to install.
    """

    default_message = "a package the driver needs is not installed"


class NoTasksError(CerealError):
    """No task of the requested name is ready to run (driver-facing)."""

    default_message = "no tasks in queue"


class NoWorkflowInstancesError(CerealError):
    """No workflow event of the requested names is ready (driver-facing)."""

    default_message = "no workflow instances in queue"


class NoDueWorkflowsError(CerealError):
    """No enabled schedule is due now (driver-facing)."""

    default_message = "no due workflows"


class NoScheduledWorkflowsError(CerealError):
    """No schedule is enabled (driver-facing)."""

    default_message = "no workflows are scheduled"


class TaskFailedError(CerealError):
    """A task's executor raised; ``str()`` is the stored error text.

    ``error_type`` and ``error_traceback`` carry the executor's exception type
    (qualified name) and traceback when they were stored, else ``None``.
    """

    default_message = "task failed"
    error_type: str | None = None
    error_traceback: str | None = None


class UnusableTaskResultError(CerealError):
    """The task's stored result vanished before its workflow consumed it."""

    default_message = "task result is not available"
