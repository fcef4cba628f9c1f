"""``multiworkflow``: the original's name for the parallel pattern (a thin alias).

In Go, ``multiworkflow`` was the branch-only precursor of
``patterns.parallel``; the parallel pattern superseded it. This module keeps
the name for those porting code and maps it onto :mod:`cereal.patterns.parallel`
(same executor, parameters, payload, ``__key`` routing and readers)::

    from cereal import multiworkflow

    manager.register_workflow_executor("sync", multiworkflow.MultiWorkflowExecutor(executors))
    await multiworkflow.enqueue_multi_workflow(manager, "sync", "run-1", {"a": 1, "b": 2})

Differences from the Go branch, all in favour of ``patterns.parallel``: the
sub-workflow instance name is the parent's (not ``""``) and a cancel visits
only unfinished sub-workflows.
"""

from __future__ import annotations

from cereal.patterns.parallel import (
    ParallelWorkflowExecutor,
    ParallelWorkflowInstance,
    enqueue_parallel_workflow,
    get_parallel_workflow_instance,
)

MultiWorkflowExecutor = ParallelWorkflowExecutor
"""Alias of :class:`cereal.patterns.ParallelWorkflowExecutor`."""

MultiWorkflowInstance = ParallelWorkflowInstance
"""Alias of :class:`cereal.patterns.ParallelWorkflowInstance`."""

enqueue_multi_workflow = enqueue_parallel_workflow
"""Alias of :func:`cereal.patterns.enqueue_parallel_workflow`."""

get_multi_workflow_instance = get_parallel_workflow_instance
"""Alias of :func:`cereal.patterns.get_parallel_workflow_instance`."""

__all__ = [
    "MultiWorkflowExecutor",
    "MultiWorkflowInstance",
    "ParallelWorkflowExecutor",
    "ParallelWorkflowInstance",
    "enqueue_multi_workflow",
    "enqueue_parallel_workflow",
    "get_multi_workflow_instance",
    "get_parallel_workflow_instance",
]
