"""The workflow loop: dequeue an event, run its callback, apply the decision.

One runner per Manager. Its drain loop claims events (the driver guarantees
one callback per instance at a time anywhere), calls the executor and applies
the decision through the completer in one atomic step. A callback that
raises or returns no decision fails its instance; nothing is redelivered in
a loop. Events of workflows with no executor here are left for others: the
name is set aside ("wayward") for a while so it does not block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from cereal import _callbacks, errors, values
from cereal.drivers.base import Driver, WorkflowCompleter
from cereal.executors import WorkflowExecutor
from cereal.instance import (
    CancelEvent,
    Decision,
    LiveWorkflowInstance,
    StartEvent,
    TaskCompleteEvent,
    TaskResult,
)
from cereal.models import TaskResultData, TaskStatus, WorkflowEvent, WorkflowEventType

logger = logging.getLogger(__name__)

WAYWARD_SECONDS = 60.0
"""How long a workflow name with no usable executor is left out of dequeues."""

_BACKOFF_MAX = 5.0


class WorkflowRunner:
    """Processes workflow events for the executors registered on one Manager."""

    def __init__(
        self,
        driver: Driver,
        executors: Mapping[str, WorkflowExecutor],
        *,
        poll_interval: float,
        heartbeat_interval: float,
        claim_expiry: float,
        max_value_bytes: int,
        on_tasks_enqueued: Callable[[set[str]], None],
        on_workflow_complete: Callable[[WorkflowEvent], None] | None,
        concurrency: int = 1,
    ) -> None:
        self._driver = driver
        self._executors = dict(executors)
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._claim_expiry = claim_expiry
        self._max_value_bytes = max_value_bytes
        self._on_tasks_enqueued = on_tasks_enqueued
        self._on_workflow_complete = on_workflow_complete
        self._concurrency = max(1, concurrency)
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._wayward: dict[str, float] = {}
        self._failures = 0

    def wake(self) -> None:
        """Look for events now instead of at the next poll (call on the loop's thread)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the event in hand, then take no more."""
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        """Poll and drain until :meth:`stop`; a crash of one drain is logged, not fatal."""
        if not self._executors:
            return
        await asyncio.gather(*(self._loop() for _ in range(self._concurrency)))

    async def _loop(self) -> None:
        while not self._stopping:
            more = await self.drain()
            if self._stopping:
                return
            if more:
                continue
            timeout = self._poll_interval
            if self._failures:
                timeout = min(_BACKOFF_MAX, 0.1 * 2.0 ** min(self._failures, 6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
            self._wakeup.clear()

    def _names(self) -> list[str]:
        now = time.monotonic()
        self._wayward = {name: until for name, until in self._wayward.items() if until > now}
        return [name for name in self._executors if name not in self._wayward]

    async def drain(self) -> bool:
        """Process events until none is ready; True means stopped with more perhaps waiting."""
        while not self._stopping:
            names = self._names()
            if not names:
                return False
            try:
                event, completer = await self._driver.dequeue_workflow(
                    names, claim_expiry=self._claim_expiry
                )
            except errors.NoWorkflowInstancesError:
                self._failures = 0
                return False
            except errors.CerealError:
                self._failures += 1
                logger.warning("dequeuing a workflow event failed; backing off", exc_info=True)
                return False
            async with completer:
                await self._process(event, completer)
        return True

    async def _process(self, event: WorkflowEvent, completer: WorkflowCompleter) -> None:
        name = event.instance.workflow_name
        executor = self._executors.get(name)
        if executor is None:
            logger.error("no executor for workflow %r here; setting it aside", name)
            self._wayward[name] = time.monotonic() + WAYWARD_SECONDS
            return  # closing the completer rolls the event back for someone else
        instance = LiveWorkflowInstance(
            name,
            event.instance.instance_name,
            parameters=event.instance.parameters,
            payload=event.instance.payload,
            enqueued_tasks=event.enqueued_task_count,
            completed_tasks=event.completed_task_count,
            max_value_bytes=self._max_value_bytes,
        )
        decision = await self._decide(executor, instance, event, completer)
        try:
            await self._apply(decision, event, completer)
        except errors.WorkflowClaimLostError:
            logger.warning(
                "workflow %s/%s ended or lost its claim during the callback; decision dropped",
                name,
                event.instance.instance_name,
            )
        except errors.CerealError:
            self._failures += 1
            logger.warning(
                "applying a decision failed; the event will be redelivered", exc_info=True
            )

    async def _decide(
        self,
        executor: WorkflowExecutor,
        instance: LiveWorkflowInstance,
        event: WorkflowEvent,
        completer: WorkflowCompleter,
    ) -> Decision:
        callback_name, ev = _callback_for(event)
        keepalive = asyncio.create_task(self._keep_claim(completer))
        try:
            return await _callbacks.decide(executor, callback_name, instance, ev)
        finally:
            keepalive.cancel()

    async def _keep_claim(self, completer: WorkflowCompleter) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await completer.heartbeat()
            except errors.CerealError:
                logger.warning("refreshing a workflow claim failed", exc_info=True)

    async def _apply(
        self, decision: Decision, event: WorkflowEvent, completer: WorkflowCompleter
    ) -> None:
        if decision.is_failed:
            await completer.fail(values.storable_text(decision.error or "workflow failed"))
            self._finished(event)
        elif decision.is_complete:
            await completer.done(decision.result)
            self._finished(event)
        else:
            await completer.continue_(decision.payload, decision.tasks)
            if decision.tasks:
                self._on_tasks_enqueued({task.task_name for task in decision.tasks})
        self._failures = 0

    def _finished(self, event: WorkflowEvent) -> None:
        if self._on_workflow_complete is None:
            return
        try:
            self._on_workflow_complete(event)
        except Exception:
            logger.exception("on_workflow_complete callback raised")


def _callback_for(event: WorkflowEvent) -> tuple[str, object]:
    """The callback an event goes to, and the event object it receives."""
    if event.type is WorkflowEventType.START:
        return "on_start", StartEvent(event.enqueued_at)
    if event.type is WorkflowEventType.CANCEL:
        return "on_cancel", CancelEvent(event.enqueued_at)
    data = event.task_result or TaskResultData(task_name="", status=TaskStatus.UNUSABLE_RESULT)
    ev = TaskCompleteEvent(data.task_name, TaskResult(data), event.enqueued_at)
    return "on_task_complete", ev
