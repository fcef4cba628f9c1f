"""Composition patterns: workflows built from other workflows (the Go ``patterns`` package).

- :func:`register_single_task_workflow_executor` / :class:`SingleTaskWorkflowExecutor`:
  a workflow that runs one task and ends with its outcome.
- :class:`ChainWorkflowExecutor`: sub-workflows one after another
  (:func:`enqueue_chain_workflow`, :func:`get_chain_workflow_instance`).
- :class:`ParallelWorkflowExecutor`: keyed sub-workflows side by side
  (:func:`enqueue_parallel_workflow`, :func:`get_parallel_workflow_instance`).

Sub-workflows are ordinary workflow executors. Their tasks must take object
parameters (dict, dataclass, pydantic model) or ``None``: a reserved routing
key (``__idx`` for chain, ``__key`` for parallel) is added to them, and the
task executors see it. Test sub-workflows on their own with :mod:`cereal.testing`.
"""

from __future__ import annotations

from cereal.patterns.chain import (
    ChainWorkflowExecutor,
    ChainWorkflowInstance,
    enqueue_chain_workflow,
    get_chain_workflow_instance,
)
from cereal.patterns.parallel import (
    ParallelWorkflowExecutor,
    ParallelWorkflowInstance,
    enqueue_parallel_workflow,
    get_parallel_workflow_instance,
)
from cereal.patterns.single_task import (
    SingleTaskWorkflowExecutor,
    register_single_task_workflow_executor,
)

__all__ = [
    "ChainWorkflowExecutor",
    "ChainWorkflowInstance",
    "ParallelWorkflowExecutor",
    "ParallelWorkflowInstance",
    "SingleTaskWorkflowExecutor",
    "enqueue_chain_workflow",
    "enqueue_parallel_workflow",
    "get_chain_workflow_instance",
    "get_parallel_workflow_instance",
    "register_single_task_workflow_executor",
]
