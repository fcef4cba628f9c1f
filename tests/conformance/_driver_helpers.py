"""Small helpers shared by the driver-level conformance tests (test_driver_*.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from cereal.checks.times import utcnow
from cereal.drivers import Driver, WorkflowCompleter, WorkKind
from cereal.engine.sweep import sweep_store
from cereal.models import NewTask, SweepReport, WorkflowEvent
from tests._waiting import wait_until

WF = "wf"
INST = "inst"

# names that break naive SQL quoting or encodings; they must round-trip unchanged
ODD_NAMES = [
    'it\'s "quoted"; DROP TABLE x; --',
    "ünïcødé ✓ 名前 🚀",
    "back\\slash %s %(name)s :name ?",
]


def ago(seconds: float) -> timedelta:
    """A duration, to write ``utcnow() - ago(60)`` readably."""
    return timedelta(seconds=seconds)


def hour_ahead() -> datetime:
    """An instant one hour from now (aware UTC)."""
    return utcnow() + timedelta(hours=1)


async def sweep(driver: Driver, task_expiry: float) -> SweepReport:
    """One maintenance sweep of ``driver``'s store, as a Manager's sweeper runs it."""
    return await sweep_store(driver, task_expiry)


async def take(
    driver: Driver, names: Sequence[str] = (WF,)
) -> tuple[WorkflowEvent, WorkflowCompleter]:
    """Dequeue the next workflow event of ``names``."""
    return await driver.dequeue_workflow(list(names))


async def started(
    driver: Driver,
    workflow_name: str = WF,
    instance_name: str = INST,
    *,
    tasks: Sequence[NewTask] = (),
    payload: bytes | None = None,
    parameters: bytes | None = b'{"p": 1}',
) -> None:
    """Enqueue an instance and process its start event with a continue_ decision.

    No other event of ``workflow_name`` may be pending (the driver picks the oldest).
    """
    await driver.enqueue_workflow(workflow_name, instance_name, parameters)
    event, completer = await take(driver, [workflow_name])
    async with completer:
        assert event.instance.instance_name == instance_name, "another event was pending"
        await completer.continue_(payload, tasks)


async def finished(
    driver: Driver,
    workflow_name: str = WF,
    instance_name: str = INST,
    *,
    result: bytes | None = b'"ok"',
    error: str | None = None,
    parameters: bytes | None = b'{"p": 1}',
) -> None:
    """Enqueue an instance and finish it at its start event (as :func:`started`)."""
    await driver.enqueue_workflow(workflow_name, instance_name, parameters)
    event, completer = await take(driver, [workflow_name])
    async with completer:
        assert event.instance.instance_name == instance_name, "another event was pending"
        if error is None:
            await completer.done(result)
        else:
            await completer.fail(error)


class Wakeups:
    """Records every wakeup a driver announces."""

    def __init__(self) -> None:
        self.calls: list[tuple[WorkKind, str | None]] = []

    def __call__(self, kind: WorkKind, name: str | None) -> None:
        self.calls.append((kind, name))

    def saw(self, kind: WorkKind, name: str | None) -> bool:
        """True if ``kind`` was announced for exactly ``name`` (a wildcard is not a match)."""
        return (kind, name) in self.calls


async def eventually(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Wait until ``predicate()`` holds; fail with ``what`` after a generous deadline."""
    await wait_until(predicate, what=what)
