"""cereal: a durable workflow and task engine.

Register workflow executors (event callbacks that return decisions and
enqueue tasks) and task executors (the work) on a :class:`Manager`, start it,
and enqueue workflows or create recurring schedules. State lives in a driver
chosen by URL: ``memory://``, ``sqlite:///cereal.db`` or ``postgresql://...``.
"""

from __future__ import annotations

import logging

from cereal import errors
from cereal.drivers import Driver, open_driver
from cereal.executors import Task, TaskExecutor, WorkflowExecutor
from cereal.instance import (
    CancelEvent,
    Decision,
    ImmutableWorkflowInstance,
    StartEvent,
    TaskCompleteEvent,
    TaskResult,
    WorkflowInstance,
)
from cereal.manager import LateWarningThreshold, Manager, MaxWakeupInterval
from cereal.models import (
    UNSET,
    DeadTask,
    EnqueuedWorkflow,
    FailedRun,
    InstanceEvent,
    InstanceTask,
    Overlap,
    RequeueOutcome,
    RetentionRule,
    RunOutcome,
    Schedule,
    StartKey,
    TaskMetadata,
    TaskQueueStats,
    TaskStatus,
    ThroughputBucket,
    WorkerInfo,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)
from cereal.rate_limit import RateLimit
from cereal.retry import RetryPolicy

logging.getLogger("cereal").addHandler(logging.NullHandler())

__all__ = [
    "UNSET",
    "CancelEvent",
    "DeadTask",
    "Decision",
    "Driver",
    "EnqueuedWorkflow",
    "FailedRun",
    "ImmutableWorkflowInstance",
    "InstanceEvent",
    "InstanceTask",
    "LateWarningThreshold",
    "Manager",
    "MaxWakeupInterval",
    "Overlap",
    "RateLimit",
    "RequeueOutcome",
    "RetentionRule",
    "RetryPolicy",
    "RunOutcome",
    "Schedule",
    "StartEvent",
    "StartKey",
    "Task",
    "TaskCompleteEvent",
    "TaskExecutor",
    "TaskMetadata",
    "TaskQueueStats",
    "TaskResult",
    "TaskStatus",
    "ThroughputBucket",
    "WorkerInfo",
    "WorkflowEvent",
    "WorkflowEventType",
    "WorkflowExecutor",
    "WorkflowInstance",
    "WorkflowInstanceData",
    "WorkflowInstanceStatus",
    "errors",
    "open_driver",
]
