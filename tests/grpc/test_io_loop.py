"""The gRPC client's private I/O loop lets its tasks end before it stops."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cereal.drivers.grpc import _io
from cereal.drivers.grpc._io import IoLoop


def start_on(io: IoLoop, work: object) -> asyncio.Task[None]:
    """Start ``work`` (a coroutine) as a task of ``io``'s loop; the task once it runs."""
    made: list[asyncio.Task[None]] = []
    running = threading.Event()

    def create() -> None:
        made.append(io.loop.create_task(work))  # type: ignore[arg-type]
        running.set()

    io.loop.call_soon_threadsafe(create)
    assert running.wait(10)
    return made[0]


def test_a_task_still_running_at_stop_ends_before_the_loop_closes() -> None:
    io = IoLoop("test-io")
    # as grpc.aio's status task after a channel closes: it needs more turns of the loop
    task = start_on(io, asyncio.sleep(0.2))
    io.stop()
    assert task.done() and not task.cancelled()
    assert io.stopped


def test_a_task_that_never_ends_is_cancelled_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_io, "_END_TASKS_TIMEOUT", 0.1)
    io = IoLoop("test-io")
    task = start_on(io, asyncio.Event().wait())
    io.stop()
    assert task.cancelled()
