"""Schedules: enqueue a workflow on a recurrence rule (RFC 5545 RRULE).

A schedule names a workflow and instance, its parameters and a rule. The
Manager's scheduler enqueues the instance whenever the rule fires (skipping a
run while the previous one is still live). Here a rule fires every second;
we watch two runs, then disable the schedule and delete it.

    python examples/04_schedules.py [--db URL]
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from _helpers import FAST, run

import cereal

RULE = "FREQ=SECONDLY;INTERVAL=1"


class Tick:
    def __init__(self) -> None:
        self.runs: list[str] = []

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        self.runs.append(ev.enqueued_at.strftime("%H:%M:%S"))
        print(f"run {len(self.runs)} of {w.workflow_name}/{w.instance_name}: {w.get_parameters()}")
        return w.complete(len(self.runs))

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        return w.fail("this workflow enqueues no tasks")

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


async def main(db: str) -> None:
    tick = Tick()
    manager = cereal.Manager(cereal.open_driver(db), **FAST)
    manager.register_workflow_executor("tick", tick)
    async with manager:
        with contextlib.suppress(cereal.errors.WorkflowScheduleNotFoundError):
            await manager.delete_workflow_schedule("tick", "every-second")  # from an earlier run
        await manager.create_workflow_schedule("tick", "every-second", {"msg": "tick"}, RULE)
        schedule = await manager.get_workflow_schedule("tick", "every-second")
        print(
            f"created schedule {schedule.recurrence!r}, first due {schedule.next_due_at:%H:%M:%S}"
        )

        deadline = time.monotonic() + 10
        while len(tick.runs) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

        await manager.update_workflow_schedule("tick", "every-second", enabled=False)
        schedule = await manager.get_workflow_schedule("tick", "every-second")
        print(f"disabled: enabled={schedule.enabled}, last enqueued {schedule.last_enqueued_at}")
        await manager.delete_workflow_schedule("tick", "every-second")
        print(f"deleted; schedules left: {len(await manager.list_workflow_schedules())}")
    print(f"the schedule ran {len(tick.runs)} times")
    if len(tick.runs) < 2:
        raise SystemExit("expected at least two runs")


if __name__ == "__main__":
    run(main, __doc__)
