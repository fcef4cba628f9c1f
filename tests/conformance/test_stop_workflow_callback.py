"""``Manager.stop()`` during a workflow callback: the event is decided or handed back at once."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from cereal import Decision, WorkflowInstance
from tests.conformance._executors import INST, WF, Flow, complete_now, register
from tests.plugins.manager import MakeManager, eventually, wait_finished

# claims and leases never expire during these tests: only a released claim lets another run it
NO_EXPIRY: dict[str, Any] = {"task_expiry": 3600.0}


class HeldStart:
    """An async ``on_start`` that waits at a gate; records entries and cancellations."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0

    async def __call__(self, w: WorkflowInstance, ev: object) -> Decision:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return w.complete("first")


async def test_stop_cancelling_a_callback_hands_its_event_to_another_manager_at_once(
    make_manager: MakeManager,
) -> None:
    # Given a Manager whose on_start is held at a gate
    held = HeldStart()
    first = register(make_manager(**NO_EXPIRY), {WF: Flow(on_start=held)})
    await first.start()
    await first.enqueue_workflow(WF, INST, "second")
    await held.entered.wait()

    # When it stops with a grace period too short for the callback
    await first.stop(grace_period=0.05)

    # Then the callback was cancelled, and a second Manager gets the start event at once
    assert held.cancelled == 1
    second_flow = Flow(on_start=complete_now)
    second = register(make_manager(**NO_EXPIRY), {WF: second_flow})
    await second.start()
    done = await wait_finished(second, WF, INST)
    assert done.get_result() == "second"
    assert second_flow.count("start", INST) == 1


async def test_stop_cancelling_a_plain_callback_hands_its_event_to_another_manager_at_once(
    make_manager: MakeManager,
) -> None:
    # Given a Manager whose plain (threaded) on_start blocks until released
    entered = threading.Event()
    release = threading.Event()

    class Blocking:
        """Plain callbacks (run in a worker thread, which a stop cannot interrupt)."""

        def on_start(self, w: WorkflowInstance, ev: object) -> Decision:
            entered.set()
            release.wait(60)
            return w.complete("first")

        def on_task_complete(self, w: WorkflowInstance, ev: object) -> Decision:
            return w.fail("unexpected")

        def on_cancel(self, w: WorkflowInstance, ev: object) -> Decision:
            return w.fail("cancelled")

    first = register(make_manager(**NO_EXPIRY), {WF: Blocking()})
    await first.start()
    await first.enqueue_workflow(WF, INST, "second")
    await eventually(entered.is_set, what="on_start entered")
    try:
        # When it stops with a grace period too short for the callback
        await first.stop(grace_period=0.05)

        # Then a second Manager gets the start event at once and decides it
        second = register(make_manager(**NO_EXPIRY), {WF: Flow(on_start=complete_now)})
        await second.start()
        done = await wait_finished(second, WF, INST)
        assert done.get_result() == "second"
    finally:
        release.set()  # the abandoned thread returns; its decision has nowhere to go


async def test_stop_lets_the_callback_in_hand_finish_within_the_grace_period(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cereal")
    # Given a Manager whose on_start is held at a gate
    held = HeldStart()
    first = register(make_manager(**NO_EXPIRY), {WF: Flow(on_start=held)})
    await first.start()
    await first.enqueue_workflow(WF, INST, "second")
    await held.entered.wait()

    # When it stops with a long grace period, and the callback is released during the stop
    stopping = asyncio.create_task(first.stop(grace_period=60))
    await eventually(
        lambda: any("manager stopping" in r.getMessage() for r in caplog.records),
        what="stop() began",
    )
    held.release.set()
    await stopping

    # Then its decision was applied, and nothing is redelivered to another Manager
    assert held.cancelled == 0
    second_flow = Flow(on_start=complete_now)
    second = register(make_manager(**NO_EXPIRY), {WF: second_flow})
    await second.start()
    done = await wait_finished(second, WF, INST)
    assert done.get_result() == "first"
    assert second_flow.count("start") == 0
