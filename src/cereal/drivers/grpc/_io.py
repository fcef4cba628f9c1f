"""A private event loop on its own thread, where all of a client's gRPC I/O runs.

grpc.aio objects belong to the loop that made them, while a cereal driver may
be shared by Managers on different loops and threads. Running every call on
one private loop makes the driver usable from any of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from cereal import errors

T = TypeVar("T")

logger = logging.getLogger("cereal")


class IoLoop:
    """Owns a thread running an event loop until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the private loop; cancelling the caller cancels it.

        Raises:
            DriverError: the loop was stopped (the driver is closed).
        """
        return await asyncio.wrap_future(self._submit(work))

    async def run_detached(
        self,
        work: Coroutine[Any, Any, T],
        *,
        if_abandoned: Callable[[T], Coroutine[Any, Any, None]] | None = None,
    ) -> T:
        """Run ``work`` on the private loop; cancelling the caller only stops its wait.

        For a request on a stream shared with other callers: cancelling a
        grpc.aio write cancels the whole call, so a cancelled caller must not
        cancel the write. ``work`` runs to its end, sending its request whole.
        When the caller was cancelled and ``work`` then succeeds, its result
        reaches nobody: ``if_abandoned(result)`` runs on the private loop to
        undo it (a dequeue's leases are handed back).

        Raises:
            DriverError: the loop was stopped (the driver is closed).
        """
        waited = asyncio.wrap_future(self._submit(work))
        waited.add_done_callback(_consume_outcome)
        try:
            return await asyncio.shield(waited)
        except asyncio.CancelledError:
            if if_abandoned is not None:
                undo = if_abandoned
                waited.add_done_callback(lambda done: self._undo_abandoned(done, undo))
            raise

    def _undo_abandoned(
        self, done: asyncio.Future[T], undo: Callable[[T], Coroutine[Any, Any, None]]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # nothing was won, so nothing needs undoing
        try:
            self._submit(undo(done.result())).add_done_callback(_log_failed_undo)
        except errors.DriverError:
            logger.warning("the gRPC driver closed before an abandoned result could be undone")

    def _submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        try:
            return asyncio.run_coroutine_threadsafe(work, self.loop)
        except RuntimeError:  # the loop is closed
            work.close()
            raise errors.DriverError("the gRPC driver is closed") from None

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` ran."""
        return self.loop.is_closed() or not self._thread.is_alive()

    def stop(self) -> None:
        """Let the loop's tasks end, stop it, wait for its thread and close it.

        Call from outside the loop. grpc.aio leaves a task per call that ends
        a turn or two after its channel closed; a loop stopped before they
        ran would drop them pending (and asyncio logs each as destroyed).
        """
        if self._thread.is_alive():
            ending = asyncio.run_coroutine_threadsafe(_end_tasks(), self.loop)
            with contextlib.suppress(Exception):
                ending.result(timeout=_END_TASKS_TIMEOUT + 1.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


_END_TASKS_TIMEOUT = 2.0
"""Seconds the loop's remaining tasks get to end at stop before they are cancelled."""


async def _end_tasks() -> None:
    """Wait (a while) for every other task of this loop to end, then cancel what is left."""
    me = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not me]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=_END_TASKS_TIMEOUT)
    for task in late:
        task.cancel()
    if late:
        await asyncio.gather(*late, return_exceptions=True)


def _log_failed_undo(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and (failure := future.exception()) is not None:
        logger.warning("undoing an abandoned gRPC result failed", exc_info=failure)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve a detached run's outcome, which nobody awaits once its caller was cancelled."""
    if not future.cancelled():
        future.exception()
