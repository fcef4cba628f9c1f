"""One driver shared by several users: concurrent init/close, a failed open and a retry.

Each test turns the real driver into a gated subclass of its own class, so
that an ``_open``/``_close`` is provably in progress while another call runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cereal import errors
from cereal.drivers import Driver
from tests.conformance._executors import INST, WF, Flow, register
from tests.plugins.manager import MakeManager, wait_finished


class Gates:
    """Holds a driver's ``_open``/``_close`` at a gate and records what happened."""

    def __init__(self) -> None:
        self.open_entered = asyncio.Event()
        self.open_release = asyncio.Event()
        self.close_entered = asyncio.Event()
        self.close_release = asyncio.Event()
        self.fail_next_open = False
        self.opens = 0
        self.opened = False  # the store is really open (set after a finished _open)
        self.open_release.set()
        self.close_release.set()


def gated(driver: Driver) -> Gates:
    """Make ``driver`` an instance of a test-only subclass of its class with gated transitions."""
    gates = Gates()
    base: type[Any] = type(driver)

    async def _open(self: Any) -> None:
        gates.open_entered.set()
        await gates.open_release.wait()
        if gates.fail_next_open:
            gates.fail_next_open = False
            raise errors.DriverError("the store is unreachable (test)")
        await base._open(self)
        gates.opens += 1
        gates.opened = True

    async def _close(self: Any) -> None:
        gates.close_entered.set()
        await gates.close_release.wait()
        gates.opened = False
        await base._close(self)

    driver.__class__ = type(f"Gated{base.__name__}", (base,), {"_open": _open, "_close": _close})
    return gates


async def _close_all(driver: Driver) -> None:
    while driver.is_open:
        await driver.close()


async def test_a_concurrent_init_returns_only_once_the_store_is_open(
    driver_factory: Callable[[], Driver],
) -> None:
    # Given a driver whose first open is held at a gate
    driver = driver_factory()
    gates = gated(driver)
    gates.open_release.clear()
    first = asyncio.create_task(driver.init())
    await gates.open_entered.wait()

    # When a second init runs while the first open is still in progress
    seen: list[bool] = []
    second_started = asyncio.Event()

    async def second_init() -> None:
        second_started.set()
        await driver.init()
        seen.append(gates.opened)

    second = asyncio.create_task(second_init())
    await second_started.wait()  # the second init ran up to its first suspension (or returned)
    gates.open_release.set()
    await asyncio.gather(first, second)

    # Then the second init returned only after the store was open, and it was opened once
    try:
        assert seen == [True]
        assert gates.opens == 1
        assert driver.is_open
        await driver.close()
        assert driver.is_open  # one user is left
        await driver.close()
        assert not driver.is_open
    finally:
        await _close_all(driver)


async def test_a_failed_open_leaves_the_driver_closed_and_a_retry_opens_it(
    driver_factory: Callable[[], Driver],
) -> None:
    # Given a driver whose first open fails
    driver = driver_factory()
    gates = gated(driver)
    gates.fail_next_open = True

    # When init is called, then called again
    with pytest.raises(errors.DriverError):
        await driver.init()
    closed_after_failure = not driver.is_open
    await driver.init()

    # Then the failure left it closed and the retry really opened it
    try:
        assert closed_after_failure
        assert driver.is_open and gates.opened and gates.opens == 1
    finally:
        await _close_all(driver)
    assert not driver.is_open


async def test_an_init_waiting_on_a_failed_open_opens_the_store_itself(
    driver_factory: Callable[[], Driver],
) -> None:
    # Given a first open held at a gate that will fail, and a second init waiting on it
    driver = driver_factory()
    gates = gated(driver)
    gates.fail_next_open = True
    gates.open_release.clear()
    first = asyncio.create_task(driver.init())
    await gates.open_entered.wait()
    seen: list[bool] = []
    second_started = asyncio.Event()

    async def second_init() -> None:
        second_started.set()
        await driver.init()
        seen.append(gates.opened)

    second = asyncio.create_task(second_init())
    await second_started.wait()

    # When the first open fails
    gates.open_release.set()
    outcomes = await asyncio.gather(first, second, return_exceptions=True)

    # Then only the first init failed; the second opened the store, held once
    try:
        assert isinstance(outcomes[0], errors.DriverError)
        assert outcomes[1] is None
        assert seen == [True]
        assert driver.is_open and gates.opens == 1
        await driver.close()
        assert not driver.is_open
    finally:
        await _close_all(driver)


async def test_an_init_racing_the_last_close_reopens_the_store(
    driver_factory: Callable[[], Driver],
) -> None:
    # Given an open driver whose last close is held at a gate
    driver = driver_factory()
    gates = gated(driver)
    await driver.init()
    gates.close_release.clear()
    closing = asyncio.create_task(driver.close())
    await gates.close_entered.wait()

    # When an init runs while the close is in progress, then the close finishes
    seen: list[bool] = []
    init_started = asyncio.Event()

    async def reopen() -> None:
        init_started.set()
        await driver.init()
        seen.append(gates.opened)

    opening = asyncio.create_task(reopen())
    await init_started.wait()
    gates.close_release.set()
    await asyncio.gather(closing, opening)

    # Then the init waited for the close and opened the store again
    try:
        assert seen == [True]
        assert driver.is_open and gates.opened and gates.opens == 2
    finally:
        await _close_all(driver)


async def test_managers_sharing_a_driver_start_concurrently_through_a_failed_open(
    make_manager: MakeManager, driver_factory: Callable[[], Driver]
) -> None:
    # Given two Managers over one driver whose first open is held at a gate and then fails
    driver = driver_factory()
    gates = gated(driver)
    gates.fail_next_open = True
    gates.open_release.clear()
    first = register(make_manager(driver=driver), {WF: Flow()})
    second = register(make_manager(driver=driver), {"other": Flow()})
    starting_first = asyncio.create_task(first.start())
    await gates.open_entered.wait()
    second_started = asyncio.Event()

    async def start_second() -> None:
        second_started.set()
        await second.start()

    starting_second = asyncio.create_task(start_second())
    await second_started.wait()

    # When the open fails, and the failed Manager retries its start
    gates.open_release.set()
    outcomes = await asyncio.gather(starting_first, starting_second, return_exceptions=True)
    await first.start()

    # Then one start failed, the other opened the driver, the retry worked, and both do work
    assert isinstance(outcomes[0], errors.DriverError)
    assert outcomes[1] is None
    await asyncio.gather(
        first.enqueue_workflow(WF, INST, "one"), second.enqueue_workflow("other", INST, "two")
    )
    assert (await wait_finished(first, WF, INST)).get_result() == "one"
    assert (await wait_finished(second, "other", INST)).get_result() == "two"
    await asyncio.gather(first.stop(), second.stop())
    assert not driver.is_open
