"""The chain pattern: run sub-workflows one after another inside one instance.

Sub-workflow ``i`` starts when sub-workflow ``i - 1`` completes. A
sub-workflow that fails stops the chain, which then *completes* (not fails):
each link's outcome is in the chain's result, read it with
:func:`get_chain_workflow_instance`. A cancel is delivered to the current
link only; the chain stops when that link ends. Results are not passed
between links.

Example::

    manager.register_workflow_executor("build", ChainWorkflowExecutor(Fetch(), Compile()))
    await enqueue_chain_workflow(manager, "build", "v1", [{"url": "..."}, {"flags": "-O2"}])
    ...
    chain = await get_chain_workflow_instance(manager, "build", "v1")
    print(chain.get_sub_workflow(1).get_result())

Limitations (as the original): tasks enqueued by a link must have object
parameters (dict, dataclass, pydantic model) or ``None``; the key ``__idx``
is reserved and added to them, so **task executors see** ``__idx`` (decoding
into a dataclass or pydantic model ignores it). Tasks of finished links keep
running until the whole chain ends; their completions are counted and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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

ROUTING_KEY = "__idx"
"""The reserved task-parameter key that names the link a task belongs to."""

INCORRECT_PARAMETERS = "Incorrect number of parameters given"
"""Start of the failure text when parameters and links do not match in number."""

UNROUTABLE_TASK = "Could not determine workflow for task"
"""Start of the failure text when a completed task names no known link."""


class ChainWorkflowExecutor:
    """A workflow executor that runs ``executors`` one after another.

    Example::

        manager.register_workflow_executor("pipeline", ChainWorkflowExecutor(First(), Second()))
    """

    def __init__(self, *executors: WorkflowExecutor) -> None:
        """Chain ``executors`` in order.

        Raises:
            ValueError: no executors given.
            TypeError: one lacks a callback.
        """
        if not executors:
            raise ValueError("ChainWorkflowExecutor needs at least one sub-workflow executor")
        for executor in executors:
            check_workflow_executor(executor)
        self._executors = tuple(executors)

    async def on_start(self, w: WorkflowInstance, ev: StartEvent) -> Decision:
        """Start the first link (and the following ones while links complete at once)."""
        loaded = self._load(w, fresh=True)
        if isinstance(loaded, Decision):
            return loaded
        params, cancelled, states = loaded
        states.append(WorkflowState())
        decision = await self._call(w, params, states, 0, "on_start", ev)
        states[0].record(decision, w)
        return await self._advance(w, params, cancelled, states, ev)

    async def on_task_complete(self, w: WorkflowInstance, ev: TaskCompleteEvent) -> Decision:
        """Route the task to its link; finished links only count it."""
        loaded = self._load(w, fresh=False)
        if isinstance(loaded, Decision):
            return loaded
        params, cancelled, states = loaded
        index = _common.routing_value(ev, ROUTING_KEY)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(states):
            return w.fail(
                f"{UNROUTABLE_TASK} {ev.task_name!r}: its parameters have no valid "
                f"{ROUTING_KEY!r} (got {index!r}, {len(states)} link(s) started)"
            )
        state = states[index]
        state.completed_tasks += 1
        if state.is_finished:
            return w.continue_(_payload(cancelled, states))
        sub_event = _common.strip_routing(ev, ROUTING_KEY)
        decision = await self._call(w, params, states, index, "on_task_complete", sub_event)
        state.record(decision, w)
        return await self._advance(w, params, cancelled, states, ev)

    async def on_cancel(self, w: WorkflowInstance, ev: CancelEvent) -> Decision:
        """Mark the chain cancelled and pass the cancel to the current link."""
        loaded = self._load(w, fresh=False)
        if isinstance(loaded, Decision):
            return loaded
        params, _, states = loaded
        if not states:
            return _common.bug(w, "chain has no started link")
        index = len(states) - 1
        if not states[index].is_finished:
            decision = await self._call(w, params, states, index, "on_cancel", ev)
            states[index].record(decision, w)
        return await self._advance(w, params, True, states, ev)

    def _load(
        self, w: WorkflowInstance, *, fresh: bool
    ) -> tuple[list[Any], bool, list[WorkflowState]] | Decision:
        parameters = w.get_parameters()
        links = parameters.get("WorkflowParams") if isinstance(parameters, dict) else None
        if not isinstance(links, list) or len(links) != len(self._executors):
            given = len(links) if isinstance(links, list) else 0
            return w.fail(
                f"{INCORRECT_PARAMETERS}: {given} parameter(s) for "
                f"{len(self._executors)} sub-workflow(s) (enqueue with enqueue_chain_workflow)"
            )
        if fresh:
            return links, False, []
        try:
            payload = _common.decode_composite(w, "chain")
            states = [WorkflowState.from_json(raw) for raw in payload.get("State") or []]
        except ValueError as exc:
            return _common.bug(w, f"invalid chain payload: {exc}")
        return links, bool(payload.get("Cancelled", False)), states

    async def _call(
        self,
        w: WorkflowInstance,
        params: list[Any],
        states: list[WorkflowState],
        index: int,
        callback_name: str,
        event: object,
    ) -> Decision:
        sub = _common.SubWorkflowInstance(
            w, states[index], params[index], routing_key=ROUTING_KEY, routing_value=index
        )
        return await _common.run_sub_callback(self._executors[index], callback_name, sub, event)

    async def _advance(
        self,
        w: WorkflowInstance,
        params: list[Any],
        cancelled: bool,
        states: list[WorkflowState],
        ev: StartEvent | TaskCompleteEvent | CancelEvent,
    ) -> Decision:
        while True:
            current = states[-1]
            if not current.is_finished:
                return w.continue_(_payload(cancelled, states))
            if cancelled or current.err is not None or len(states) == len(self._executors):
                return w.complete(_payload(cancelled, states))
            index = len(states)
            states.append(WorkflowState())
            start = StartEvent(ev.enqueued_at)
            decision = await self._call(w, params, states, index, "on_start", start)
            states[index].record(decision, w)


def _payload(cancelled: bool, states: list[WorkflowState]) -> dict[str, Any]:
    return {"Cancelled": cancelled, "State": [state.to_json() for state in states]}


def chain_parameters(parameters: Sequence[Any]) -> dict[str, Any]:
    """The chain workflow's parameters for one value per link (Go ``ToChainWorkflowParameters``).

    Raises:
        ValueError: ``parameters`` is empty.
        TypeError: ``parameters`` is a string or not a sequence.
    """
    if isinstance(parameters, str | bytes) or not isinstance(parameters, Sequence):
        raise TypeError(
            f"chain parameters must be a sequence (one value per link), "
            f"got {type(parameters).__name__}"
        )
    if not parameters:
        raise ValueError("chain workflow parameters are empty: give one value per link")
    return {"WorkflowParams": list(parameters)}


async def enqueue_chain_workflow(
    manager: Manager, workflow_name: str, instance_name: str, parameters: Sequence[Any]
) -> None:
    """Enqueue a chain instance; ``parameters[i]`` is link ``i``'s parameters.

    Raises:
        ValueError: ``parameters`` is empty (and what ``enqueue_workflow`` raises).
        TypeError: ``parameters`` is not a sequence, or a value is not JSON.
        WorkflowInstanceExistsError: the instance is running.
    """
    await manager.enqueue_workflow(workflow_name, instance_name, chain_parameters(parameters))


class ChainWorkflowInstance(_common.CompositeInstance):
    """A read-only view of a chain instance and of each of its links."""

    def __init__(self, instance: ImmutableWorkflowInstance) -> None:
        """Read ``instance``, a chain workflow's instance."""
        super().__init__(instance)
        composite = _common.composite_state(instance)
        self._cancelled = bool(composite.get("Cancelled", False))
        self._states = [WorkflowState.from_json(raw) for raw in composite.get("State") or []]
        parameters = instance.get_parameters()
        links = parameters.get("WorkflowParams") if isinstance(parameters, dict) else None
        self._params: list[Any] = links if isinstance(links, list) else []

    def get_sub_workflow(self, index: int) -> ImmutableWorkflowInstance:
        """Link ``index`` as an instance view (running, completed or failed).

        Raises:
            WorkflowInstanceNotFoundError: the link has not started (or no such link).
        """
        if isinstance(index, bool) or not 0 <= index < len(self._states):
            raise _common.not_found(f"{index!r} of chain {self.workflow_name}/{self.instance_name}")
        parameters = self._params[index] if index < len(self._params) else None
        return self._states[index].view(self._instance, parameters)

    def sub_workflow_count(self) -> int:
        """How many links have started."""
        return len(self._states)

    def is_cancelled(self) -> bool:
        """True once the chain was asked to cancel."""
        return self._cancelled

    def get_parameters(self) -> list[Any]:
        """The parameters of each link, in order."""
        return list(self._params)


async def get_chain_workflow_instance(
    manager: Manager, workflow_name: str, instance_name: str
) -> ChainWorkflowInstance:
    """Look up a chain instance (running, else its newest finished run).

    Raises:
        WorkflowInstanceNotFoundError: no such instance.
    """
    return ChainWorkflowInstance(await manager.get_workflow_instance(workflow_name, instance_name))
