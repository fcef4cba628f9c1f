"""Read-only views of a :class:`MemoryState` for inspection (the dashboard's reads).

Every function expects the caller to hold the store's lock.
"""

from __future__ import annotations

from cereal.drivers._inspect_pages import is_paged, newest_first
from cereal.drivers._memory_state import MemoryState, Task
from cereal.models import (
    InstanceEvent,
    InstanceTask,
    RetentionRule,
    StartKey,
    TaskQueueStats,
    rules_of,
)


def instance_tasks(
    state: MemoryState,
    workflow_name: str,
    instance_name: str,
    *,
    limit: int | None = None,
    before: int | None = None,
    paged: bool = False,
) -> list[InstanceTask]:
    """The live instance's queued and running tasks, in enqueue order (a page: newest first)."""
    inst = state.instances.get((workflow_name, instance_name))
    if inst is None:
        return []
    tasks = sorted(inst.tasks.items())
    if paged:
        tasks = newest_first(tasks, lambda item: item[0], limit, before)
    return [_task_view(task, state, workflow_name, instance_name) for _, task in tasks]


def named_tasks(
    state: MemoryState, task_name: str, *, limit: int | None, before: int | None, paged: bool
) -> list[InstanceTask]:
    """Every live instance's queued and running tasks of one name, in enqueue order."""
    tasks = sorted(
        (seq, task, key)
        for key, inst in state.instances.items()
        for seq, task in inst.tasks.items()
        if task.task_name == task_name
    )
    if paged:
        tasks = newest_first(tasks, lambda item: item[0], limit, before)
    return [_task_view(task, state, *key) for _, task, key in tasks]


def _task_view(
    task: Task, state: MemoryState, workflow_name: str, instance_name: str
) -> InstanceTask:
    return InstanceTask(
        task_id=str(task.seq),
        task_name=task.task_name,
        state="running" if task.seq in state.running else "queued",
        parameters=task.parameters,
        enqueued_at=task.enqueued_at,
        start_after=task.start_after,
        attempt=task.attempt,
        workflow_name=workflow_name,
        instance_name=instance_name,
        concurrency_key=task.concurrency_key,
        concurrency_limit=task.concurrency_limit,
        rate_limit_starts=task.rate_limit_starts,
        rate_limit_seconds=task.rate_limit_seconds,
        priority=task.priority,
        idempotency_key=task.idempotency_key,
    )


def instance_events(
    state: MemoryState,
    workflow_name: str,
    instance_name: str,
    *,
    limit: int | None = None,
    before: int | None = None,
) -> list[InstanceEvent]:
    """The event history of the live instance, else of the newest finished run, oldest first.

    With ``limit`` or ``before``: that page, newest first.
    """
    key = (workflow_name, instance_name)
    inst = state.instances.get(key)
    if inst is not None:
        received, pending = inst.received, inst.events
    elif (row := state.latest.get(key)) is not None:
        received, pending = row.received, {}
    else:
        return []
    if is_paged(limit, before):
        received = newest_first(received, lambda event: event.seq, limit, before)
    found = []
    for event in received:
        result = event.task_result
        found.append(
            InstanceEvent(
                seq=event.seq,
                type=event.type,
                enqueued_at=event.enqueued_at,
                task_name=None if result is None else result.task_name,
                task_status=None if result is None else result.status,
                error_text="" if result is None else result.error_text,
                pending=event.seq in pending,
                task_enqueued_at=event.task_enqueued_at,
                task_attempts=None if result is None else result.attempts,
            )
        )
    return found


def queue_stats(state: MemoryState) -> list[TaskQueueStats]:
    """Per task name with queued or running tasks: counts and the oldest queued time."""
    running: dict[str, int] = {}
    for task in state.running.values():
        running[task.task_name] = running.get(task.task_name, 0) + 1
    names = sorted({name for name, queue in state.queued.items() if queue} | set(running))
    stats = []
    for name in names:
        queue = state.queued.get(name, {})
        oldest = min((task.enqueued_at for task in queue.values()), default=None)
        stats.append(TaskQueueStats(name, len(queue), running.get(name, 0), oldest))
    return stats


def start_keys(state: MemoryState, workflow_name: str, instance_name: str) -> list[StartKey]:
    """The kept idempotency keys that started runs of this instance name, newest first."""
    found = [
        StartKey(key, created_at)
        for (name, key), (started, created_at) in state.start_keys.items()
        if name == workflow_name and started == instance_name
    ]
    return sorted(found, key=lambda k: (k.created_at, k.idempotency_key), reverse=True)


def applied_retention(state: MemoryState) -> list[RetentionRule]:
    """The retention the sweeps last applied, as rules (none before the first sweep)."""
    if state.retention_applied is None:
        return []
    retention, applied_at = state.retention_applied
    return rules_of(retention, applied_at)
