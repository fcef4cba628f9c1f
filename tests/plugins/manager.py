"""Manager fixtures: a factory of fast-polling Managers stopped at teardown, and waiting helpers.

Tests never assert on timing: they wait for a condition with ``eventually``
(bounded by a generous timeout) and assert on what happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cereal import ImmutableWorkflowInstance, Manager, errors
from cereal.drivers import Driver
from tests._waiting import wait_until

FAST_OPTIONS: dict[str, Any] = {
    "task_poll_interval": 0.05,
    "workflow_poll_interval": 0.05,
    "task_heartbeat_interval": 0.1,
    "task_expiry": 1.0,
    "stop_grace_period": 1.0,
    "scheduler_max_wakeup_interval": 0.5,
}


async def eventually(
    predicate: Callable[[], Awaitable[bool] | bool], *, timeout: float = 15.0, what: str = ""
) -> None:
    """Wait until ``predicate`` holds; fail the test after ``timeout`` seconds."""
    await wait_until(predicate, what=what or repr(predicate), timeout=timeout)


async def wait_finished(
    manager: Manager, workflow_name: str, instance_name: str, *, timeout: float = 15.0
) -> ImmutableWorkflowInstance:
    """Wait until the instance has finished; returns its final snapshot."""
    snapshot: list[ImmutableWorkflowInstance] = []

    async def finished() -> bool:
        try:
            found = await manager.get_workflow_instance(workflow_name, instance_name)
        except errors.WorkflowInstanceNotFoundError:
            return False
        snapshot[:] = [found]
        return not found.is_running()

    await eventually(finished, timeout=timeout, what=f"{workflow_name}/{instance_name} finished")
    return snapshot[0]


MakeManager = Callable[..., Manager]


@pytest.fixture
async def make_manager(driver_factory: Callable[[], Driver]) -> AsyncIterator[MakeManager]:
    """Build Managers over the test's store (same store for every call); stopped at teardown.

    Keyword arguments override :data:`FAST_OPTIONS`; pass ``driver=`` to use a given driver.
    """
    built: list[Manager] = []

    def make(*, driver: Driver | None = None, **options: Any) -> Manager:
        manager = Manager(driver or driver_factory(), **{**FAST_OPTIONS, **options})
        built.append(manager)
        return manager

    yield make
    for manager in reversed(built):
        await manager.stop(grace_period=0.5)
