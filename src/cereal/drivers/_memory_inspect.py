"""Read-only views of a :class:`MemoryState` for inspection (the dashboard's reads).

Every function expects the caller to hold the store's lock.
"""

from __future__ import annotations

from cereal.drivers._memory_state import MemoryState, Task
from cereal.models import InstanceEvent, InstanceTask, TaskQueueStats


def instance_tasks(
    state: MemoryState, workflow_name: str, instance_name: str
) -> list[InstanceTask]:
    """The queued and running tasks of the live instance, in enqueue order."""
    inst = state.instances.get((workflow_name, instance_name))
    if inst is None:
        return []
    return [_task_view(task, state) for _, task in sorted(inst.tasks.items())]


def _task_view(task: Task, state: MemoryState) -> InstanceTask:
    return InstanceTask(
        task_id=str(task.seq),
        task_name=task.task_name,
        state="running" if task.seq in state.running else "queued",
        parameters=task.parameters,
        enqueued_at=task.enqueued_at,
        start_after=task.start_after,
        attempt=task.attempt,
    )


def instance_events(
    state: MemoryState, workflow_name: str, instance_name: str
) -> list[InstanceEvent]:
    """The pending events of the live instance in sequence order."""
    inst = state.instances.get((workflow_name, instance_name))
    if inst is None:
        return []
    found = []
    for seq, event in sorted(inst.events.items()):
        result = event.task_result
        found.append(
            InstanceEvent(
                seq=seq,
                type=event.type,
                enqueued_at=event.enqueued_at,
                task_name=None if result is None else result.task_name,
                task_status=None if result is None else result.status,
                error_text="" if result is None else result.error_text,
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
