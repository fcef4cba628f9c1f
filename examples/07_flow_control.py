"""Flow control: concurrency keys, rate limits, priorities and idempotency keys.

Three workflows share one task executor and one store:

* ``charges`` enqueues six charges for each of two customers under a
  concurrency key per customer, at most 2 running at once per customer
  (however many workers are free);
* ``mailing`` enqueues four calls to a mail provider that takes at most 2
  calls in any 3 s (``RateLimit(2, timedelta(seconds=3))``): two go at once,
  two wait in the queue, not failed, until the first two leave the window;
* ``triage`` enqueues bulk and urgent tasks interleaved for a single worker:
  every urgent task (priority 9) runs before any bulk one (priority 0);
* ``signup`` runs two checks, and each check's step asks for the welcome mail
  under one idempotency key: the run sends it once;
* ``onboarding`` is enqueued four times under one workflow concurrency key
  with a limit of 2: two runs start, the others wait their turn.

    python examples/07_flow_control.py [--db URL]
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

from _helpers import FAST, run, wait_finished

import cereal


class Enqueue:
    """A workflow that enqueues the given tasks in on_start and completes when all reported."""

    def __init__(self, enqueue: object) -> None:
        self._enqueue = enqueue

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        self._enqueue(w)  # type: ignore[operator]
        return w.continue_()

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(w.total_completed_tasks())
        return w.continue_()

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


def charges(w: cereal.WorkflowInstance) -> None:
    for customer in ("ada", "bob"):
        for n in range(6):
            w.enqueue_task(
                "charge",
                {"customer": customer, "n": n},
                concurrency_key=f"customer-{customer}",
                concurrency_limit=2,
            )


def mailing(w: cereal.WorkflowInstance) -> None:
    for n in range(4):
        w.enqueue_task(
            "send",
            n,
            concurrency_key="mail-provider",
            rate_limit=cereal.RateLimit(2, timedelta(seconds=3)),
        )


def triage(w: cereal.WorkflowInstance) -> None:
    for n in range(3):
        w.enqueue_task("triage", f"bulk-{n}")
        w.enqueue_task("triage", f"urgent-{n}", priority=9)


class Signup:
    """Two checks; each one's step asks for the welcome mail, and the key sends it once."""

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        for check in ("email", "phone"):
            w.enqueue_task("check", check)
        return w.continue_()

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        if ev.task_name == "check":
            # the second check's step asks again: the run holds this key, so the
            # enqueue is dropped and not counted (the mail may have gone already)
            w.enqueue_task("notify", "welcome", idempotency_key="welcome-mail")
        if w.total_completed_tasks() == w.total_enqueued_tasks():
            return w.complete(w.total_completed_tasks())
        return w.continue_()

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


class Onboarding:
    """Each run sets an account up (one task); counts the runs started and not yet ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self.most = 0

    def on_start(self, w: cereal.WorkflowInstance, ev: cereal.StartEvent) -> cereal.Decision:
        with self._lock:
            self._live.add(w.instance_name)
            self.most = max(self.most, len(self._live))
        w.enqueue_task("setup", w.instance_name)
        return w.continue_()

    def on_task_complete(
        self, w: cereal.WorkflowInstance, ev: cereal.TaskCompleteEvent
    ) -> cereal.Decision:
        with self._lock:  # before the run ends (and lets a waiting one start)
            self._live.discard(w.instance_name)
        return w.complete(w.instance_name)

    def on_cancel(self, w: cereal.WorkflowInstance, ev: cereal.CancelEvent) -> cereal.Decision:
        return w.fail("cancelled")


class Charges:
    """Counts, per customer, the most charges running at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def run(self, task: cereal.Task) -> None:
        customer = task.get_parameters()["customer"]
        with self._lock:
            self._now[customer] = self._now.get(customer, 0) + 1
            self.most[customer] = max(self.most.get(customer, 0), self._now[customer])
        time.sleep(0.1)
        with self._lock:
            self._now[customer] -= 1


async def main(db: str) -> None:
    manager = cereal.Manager(cereal.open_driver(db), **FAST)
    charge = Charges()
    sent: list[int] = []
    triaged: list[str] = []
    manager.register_workflow_executor("charges", Enqueue(charges))
    manager.register_workflow_executor("mailing", Enqueue(mailing))
    manager.register_workflow_executor("triage", Enqueue(triage))
    manager.register_workflow_executor("signup", Signup())
    onboarding = Onboarding()
    manager.register_workflow_executor("onboarding", onboarding)
    manager.register_task_executor("setup", lambda task: time.sleep(0.1), workers=4)
    mails: list[str] = []
    manager.register_task_executor("charge", charge.run, workers=8)
    manager.register_task_executor(
        "send", lambda task: sent.append(task.get_parameters()), workers=4
    )
    manager.register_task_executor(
        "triage", lambda task: triaged.append(task.get_parameters()), workers=1
    )
    manager.register_task_executor("check", lambda task: None)
    manager.register_task_executor("notify", lambda task: mails.append(task.get_parameters()))
    async with manager:
        for name in ("charges", "mailing", "triage", "signup"):
            await manager.enqueue_workflow(name, "run")
        for n in range(4):
            await manager.enqueue_workflow(
                "onboarding", f"customer-{n}", concurrency_key="onboarding", concurrency_limit=2
            )

        while len(sent) < 2:
            await asyncio.sleep(0.05)
        waiting = [t for t in await manager.list_tasks("send") if t.state == "queued"]
        print(f"mail calls sent at once: {len(sent)}, waiting for the rate limit: {len(waiting)}")

        for name in ("charges", "mailing", "triage"):
            done = await wait_finished(manager, name, "run", timeout=30)
            print(f"{name} finished: {done.get_result()} tasks")
        most = max(charge.most.values())
        print(f"most charges running at once for one customer: {most} (limit 2)")
        print(f"triage order: {', '.join(triaged)}")
        signup = await wait_finished(manager, "signup", "run", timeout=30)
        print(f"signup finished: {signup.get_result()} tasks, welcome mails sent: {len(mails)}")
        for n in range(4):
            await wait_finished(manager, "onboarding", f"customer-{n}", timeout=30)
        held = "held" if onboarding.most <= 2 else f"broken: {onboarding.most} at once"
        print(f"onboarding: 4 runs finished, the limit of 2 started at once {held}")


if __name__ == "__main__":
    run(main, __doc__)
