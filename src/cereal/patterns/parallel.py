"""The parallel pattern: run keyed sub-workflows side by side inside one instance.

Every sub-workflow starts at once; the composite completes when all have
finished. A sub-workflow that fails is recorded (read it with
:func:`get_parallel_workflow_instance`) and does not stop the others; the
composite itself fails only for structural errors (no executor for a key, a
task that names no sub-workflow). A cancel is passed to every unfinished
sub-workflow.

Each sub-workflow's decision is evaluated on its own instance view, so tasks
one sub-workflow enqueues never turn another's ``complete()`` into a failure
(the original had that order-dependent bug); a sub-workflow that enqueues
tasks and completes in one callback fails, as a workflow would.

Example::

    manager.register_workflow_executor(
        "fanout", ParallelWorkflowExecutor({"eu": Deploy(), "us": Deploy()})
    )
    await enqueue_parallel_workflow(manager, "fanout", "v2", {"eu": {"n": 3}, "us": {"n": 5}})

Limitations: tasks enqueued by a sub-workflow must have object parameters
(dict, dataclass, pydantic model) or ``None``; the key ``__key`` is reserved
and added to them, so **task executors see** ``__key`` (decoding into a
dataclass or pydantic model ignores it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cereal.executors import WorkflowExecutor, check_workflow_executor
from cereal.instance import (
    CancelEvent,
    Decision,
    ImmutableWorkflowInstance,
    StartEvent,
    TaskCompleteEvent,
    WorkflowInstance,
)
from cereal.manager import Manager
from cereal.patterns import _common
from cereal.patterns._common import WorkflowState

logger = logging.getLogger(__name__)

T = TypeVar("T")

ROUTING_KEY = "__key"
"""The reserved task-parameter key that names the sub-workflow a task belongs to."""

UNROUTABLE_TASK = "Could not determine workflow for task"
"""Start of the failure text when a completed task names no known sub-workflow."""

NO_EXECUTOR = "could not find workflow executor for sub-workflow"
"""Start of the failure text when no executor exists for a sub-workflow's key."""

ExecutorLookup = Mapping[str, WorkflowExecutor] | Callable[[str], WorkflowExecutor | None]

_Loaded = tuple[dict[str, Any], dict[str, WorkflowState]]


class ParallelWorkflowExecutor:
    """A workflow executor that runs one sub-workflow per key of its parameters.

    Example::

        ParallelWorkflowExecutor({"a": WorkA(), "b": WorkB()})
        ParallelWorkflowExecutor(lambda key: Deploy() if key.startswith("region-") else None)
    """

    def __init__(self, executors: ExecutorLookup) -> None:
        """Find each key's executor in ``executors`` (a mapping, or a function giving ``None``).

        Raises:
            TypeError: ``executors`` is neither, or a mapped executor lacks a callback.
        """
        if isinstance(executors, Mapping):
            for executor in executors.values():
                check_workflow_executor(executor)
            self._lookup: Callable[[str], WorkflowExecutor | None] = dict(executors).get
        elif callable(executors):
            self._lookup = executors
        else:
            raise TypeError(
                "ParallelWorkflowExecutor takes a mapping of key to executor or a function "
                f"key -> executor | None, got {type(executors).__name__}"
            )

    def _executor(self, key: str) -> WorkflowExecutor | None:
        executor = self._lookup(key)
        if executor is not None:
            check_workflow_executor(executor)
        return executor

    async def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Start every sub-workflow, in key order."""
        loaded = self._load(w, fresh=True)
        if isinstance(loaded, Decision):
            return loaded
        params, states = loaded
        missing = [key for key in params if self._executor(key) is None]
        if missing:
            return w.fail(_no_executor(missing[0]))
        for key in params:
            states[key] = WorkflowState()
            decision = await self._call(w, params, states, key, "on_start", ev)
            states[key].record(decision, w)
        return _decide(w, states)

    async def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Route the task to its sub-workflow; finished ones only count it."""
        loaded = self._load(w, fresh=False)
        if isinstance(loaded, Decision):
            return loaded
        params, states = loaded
        key = _common.routing_value(ev, ROUTING_KEY)
        if not isinstance(key, str) or key not in states:
            return w.fail(
                f"{UNROUTABLE_TASK} {ev.task_name!r}: its parameters have no known "
                f"{ROUTING_KEY!r} (got {key!r})"
            )
        state = states[key]
        state.completed_tasks += 1
        if not state.is_finished:
            if self._executor(key) is None:
                return w.fail(_no_executor(key))
            sub_event = _common.strip_routing(ev, ROUTING_KEY)
            decision = await self._call(w, params, states, key, "on_task_complete", sub_event)
            state.record(decision, w)
        return _decide(w, states)

    async def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Pass the cancel to every unfinished sub-workflow."""
        loaded = self._load(w, fresh=False)
        if isinstance(loaded, Decision):
            return loaded
        params, states = loaded
        running = [key for key, state in states.items() if not state.is_finished]
        missing = [key for key in running if self._executor(key) is None]
        if missing:
            return w.fail(_no_executor(missing[0]))
        for key in running:
            decision = await self._call(w, params, states, key, "on_cancel", ev)
            states[key].record(decision, w)
        return _decide(w, states)

    def _load(self, w: WorkflowInstance, *, fresh: bool) -> _Loaded | Decision:
        try:
            params = _read_parameters(w.get_parameters())
        except ValueError as exc:
            return w.fail(f"{exc} (enqueue with enqueue_parallel_workflow)")
        if fresh:
            return params, {}
        try:
            payload = _common.decode_composite(w, "parallel")
            raw_states = payload.get("State") or {}
            if not isinstance(raw_states, dict):
                raise ValueError("State must be an object")
            states = {key: WorkflowState.from_json(raw) for key, raw in raw_states.items()}
        except ValueError as exc:
            return _common.bug(w, f"invalid parallel payload: {exc}")
        return params, states

    async def _call(
        self,
        w: WorkflowInstance,
        params: dict[str, Any],
        states: dict[str, WorkflowState],
        key: str,
        callback_name: str,
        event: object,
    ) -> Decision:
        sub = _common.SubWorkflowInstance(
            w, states[key], params.get(key), routing_key=ROUTING_KEY, routing_value=key
        )
        return await _common.run_sub_callback(self._executor(key), callback_name, sub, event)


def _no_executor(key: str) -> str:
    return f"{NO_EXECUTOR} {key!r}"


def _decide(w: WorkflowInstance, states: dict[str, WorkflowState]) -> Decision:
    payload = {"State": {key: state.to_json() for key, state in states.items()}}
    if all(state.is_finished for state in states.values()):
        return w.complete(payload)
    return w.continue_(payload)


def _read_parameters(parameters: Any) -> dict[str, Any]:
    """Each key's parameters, in the enqueued key order."""
    if not isinstance(parameters, dict):
        raise ValueError("parallel workflow parameters must be an object")
    keys = parameters.get("SubworkflowKeys")
    params = parameters.get("WorkflowParams") or {}
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ValueError("parallel workflow parameters need SubworkflowKeys, a list of strings")
    if not isinstance(params, dict):
        raise ValueError("parallel workflow parameters need WorkflowParams, an object")
    return {key: params.get(key) for key in keys}


def parallel_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parallel workflow's parameters, one value per key (Go ``ToParallelWorkflowParameters``).

    The mapping's order is the order sub-workflows start in. An empty
    mapping is allowed: the composite completes at once.

    Raises:
        TypeError: ``parameters`` is not a mapping with string keys.
    """
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"parallel parameters must be a mapping of key to parameters, "
            f"got {type(parameters).__name__}"
        )
    keys = list(parameters)
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"parallel sub-workflow keys must be str, got {type(key).__name__}")
    return {"SubworkflowKeys": keys, "WorkflowParams": dict(parameters)}


async def enqueue_parallel_workflow(
    manager: Manager, workflow_name: str, instance_name: str, parameters: Mapping[str, Any]
) -> None:
    """Enqueue a parallel instance: one sub-workflow per key, with that key's parameters.

    Raises:
        TypeError: ``parameters`` is not a str-keyed mapping, or a value is not JSON.
        WorkflowInstanceExistsError: the instance is running.
    """
    await manager.enqueue_workflow(workflow_name, instance_name, parallel_parameters(parameters))


class ParallelWorkflowInstance(_common.CompositeInstance):
    """A read-only view of a parallel instance and of each of its sub-workflows."""

    def __init__(self, instance: ImmutableWorkflowInstance) -> None:
        """Read ``instance``, a parallel workflow's instance."""
        super().__init__(instance)
        raw_states = _common.composite_state(instance).get("State") or {}
        self._states = {
            key: WorkflowState.from_json(raw)
            for key, raw in (raw_states.items() if isinstance(raw_states, dict) else [])
        }
        try:
            self._params = _read_parameters(instance.get_parameters())
        except ValueError:
            self._params = {}

    def get_sub_workflow(self, key: str) -> ImmutableWorkflowInstance:
        """Sub-workflow ``key`` as an instance view (running, completed or failed).

        Raises:
            WorkflowInstanceNotFoundError: no sub-workflow with that key has started.
        """
        state = self._states.get(key)
        if state is None:
            raise _common.not_found(f"{key!r} of {self.workflow_name}/{self.instance_name}")
        return state.view(self._instance, self._params.get(key))

    def list_sub_workflows(self) -> list[str]:
        """The keys of the started sub-workflows, in start order."""
        return list(self._states)

    def get_parameters(self) -> dict[str, Any]:
        """Each key's parameters."""
        return dict(self._params)


async def get_parallel_workflow_instance(
    manager: Manager, workflow_name: str, instance_name: str
) -> ParallelWorkflowInstance:
    """Look up a parallel instance (running, else its newest finished run).

    Raises:
        WorkflowInstanceNotFoundError: no such instance.
    """
    return ParallelWorkflowInstance(
        await manager.get_workflow_instance(workflow_name, instance_name)
    )
