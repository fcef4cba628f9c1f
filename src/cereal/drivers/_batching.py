"""Group commit for the SQL stores: writes queued by many coroutines, flushed together.

A :class:`Batcher` queues writes of one kind (task completions, decisions,
lease heartbeats, a store's plain writes) and hands each group of them to a
flush function, the store's own code that commits the whole group at once
(one transaction, one statement, one fsync). The first write starts a flush
at once (on the next turn of the event loop), and writes arriving while a
flush runs form the next group, so a lone write pays no added latency and a
busy process batches by itself. One flush is in flight at a time. A batcher
given a ``gather_window`` also waits, while busy (its previous group held
several writes), up to that long for as many writes as last time: writes
that trickle in one by one (short tasks ending at different moments) still
share a commit.

Each caller resumes only after the flush that holds its write, with its own
result, or with its own error: a flush may report a write as
:class:`Failed` while the rest of its group commits. A flush that fails as a
whole fails every write of the group, or, with ``retry_alone``, is retried
write by write, so one bad write fails only its caller.

A caller cancelled while it waits never loses or doubles a write that is
already in a flush: the write commits (or not) with its group, and only the
caller stops waiting. A write still queued either stays queued and commits
later (the default, like a single statement already sent) or, with
``withdraw_cancelled``, is taken out of the queue and never runs.

A batcher belongs to one event loop (its futures are that loop's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

W = TypeVar("W")
R = TypeVar("R")


@dataclass(frozen=True)
class Failed:
    """One write's own failure in a flush's results; the rest of its group committed."""

    error: Exception


Flush = Callable[[Sequence[W]], Awaitable[Sequence[R | Failed]]]
"""Commits a group of writes; returns each write's result (or :class:`Failed`), in order."""


@dataclass(eq=False)  # compared by identity: a caller finds its own entry in the queue
class _Pending(Generic[W, R]):
    write: W
    future: asyncio.Future[R]


class Batcher(Generic[W, R]):
    """Queues writes of one kind and commits them in groups, one group at a time.

    Args:
        flush: commits one group; it raises only when the group as a whole failed.
        name: names the flushing task and the log lines.
        max_group: most writes handed to one flush (None: everything queued).
        retry_alone: a group whose flush raised is flushed again write by
            write, so only the writes that fail alone fail; otherwise every
            write of the group gets the group's error.
        withdraw_cancelled: a caller cancelled before its write is in a flush
            takes the write back (it never runs); otherwise it stays queued.
        sort_key: orders each group before its flush (e.g. the order the
            writes take their locks in).
        gather_window: seconds a flush may wait for more writes while the
            process is busy: when the previous group held several writes and
            fewer than that are queued, the flush waits until as many are
            queued or the window ends. A lone write after a lone write never
            waits. None: never wait.
    """

    def __init__(
        self,
        flush: Flush[W, R],
        *,
        name: str,
        max_group: int | None = None,
        retry_alone: bool = False,
        withdraw_cancelled: bool = False,
        sort_key: Callable[[W], Any] | None = None,
        gather_window: float | None = None,
    ) -> None:
        if max_group is not None and max_group < 1:
            raise ValueError(f"max_group must be at least 1, got {max_group}")
        self._flush = flush
        self._name = name
        self._max_group = max_group
        self._retry_alone = retry_alone
        self._withdraw_cancelled = withdraw_cancelled
        self._sort_key = sort_key
        self._queue: list[_Pending[W, R]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._gather_window = gather_window
        self._last_group = 0
        self._gathered: asyncio.Event | None = None  # set when enough writes are queued
        self._gather_target = 0

    @property
    def pending(self) -> int:
        """How many writes are queued and not yet handed to a flush."""
        return len(self._queue)

    async def run(self, write: W) -> R:
        """Queue ``write`` and return its result once the flush holding it is done.

        Raises:
            Exception: the write's own error, or its group's (see the class).
        """
        loop = asyncio.get_running_loop()
        pending: _Pending[W, R] = _Pending(write, loop.create_future())
        self._queue.append(pending)
        if self._gathered is not None and len(self._queue) >= self._gather_target:
            self._gathered.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all(), name=self._name)
        if not self._withdraw_cancelled:
            # the write stays queued when its caller is cancelled: it commits anyway,
            # exactly as a single statement already sent would
            try:
                return await asyncio.shield(pending.future)
            except asyncio.CancelledError:
                pending.future.add_done_callback(_unread)
                raise
        try:
            return await pending.future
        except asyncio.CancelledError:
            if pending in self._queue:  # not in a flush yet: it never runs
                self._queue.remove(pending)
            raise

    async def drain(self) -> None:
        """Wait until every queued write has been committed or has failed.

        Writes queued meanwhile are waited for too. Cancelling the caller
        does not cancel the flushes.
        """
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])

    async def _flush_all(self) -> None:
        group: list[_Pending[W, R]] = []
        try:
            while self._queue:
                await self._gather()
                group = self._take_group()
                if group:
                    await self._commit(group)
                group = []
        except BaseException as exc:
            # cancelled (the loop is closing): no caller may be left waiting forever
            for pending in [*group, *self._queue]:
                _fail(pending, exc)
            self._queue.clear()
            raise

    async def _gather(self) -> None:
        """Under load, wait (at most the gather window) for as many writes as last time."""
        target = self._last_group
        if self._max_group is not None:
            target = min(target, self._max_group)
        if self._gather_window is None or target < 2 or len(self._queue) >= target:
            return
        self._gathered, self._gather_target = asyncio.Event(), target
        try:
            async with asyncio.timeout(self._gather_window):
                await self._gathered.wait()
        except TimeoutError:
            pass
        finally:
            self._gathered = None

    def _take_group(self) -> list[_Pending[W, R]]:
        size = len(self._queue) if self._max_group is None else self._max_group
        # a future already done here was cancelled by its withdrawing caller
        group = [pending for pending in self._queue[:size] if not pending.future.done()]
        del self._queue[:size]
        self._last_group = len(group)
        sort_key = self._sort_key
        if sort_key is not None:
            group.sort(key=lambda pending: sort_key(pending.write))
        return group

    async def _commit(self, group: list[_Pending[W, R]]) -> None:
        try:
            outcomes = await self._flush_checked(group)
        except Exception as exc:
            if not self._retry_alone:
                for pending in group:
                    _fail(pending, exc)
                return
            logger.debug(
                "%s: a group of %d writes failed; retrying each alone: %s",
                self._name,
                len(group),
                exc,
            )
            for pending in group:
                try:
                    [outcome] = await self._flush_checked([pending])
                except Exception as alone:
                    _fail(pending, alone)
                else:
                    _settle(pending, outcome)
            return
        for pending, outcome in zip(group, outcomes, strict=True):
            _settle(pending, outcome)

    async def _flush_checked(self, group: list[_Pending[W, R]]) -> Sequence[R | Failed]:
        outcomes = await self._flush([pending.write for pending in group])
        if len(outcomes) != len(group):
            raise RuntimeError(
                f"{self._name}: the flush gave {len(outcomes)} results for {len(group)} writes"
            )
        return outcomes


def _settle(pending: _Pending[W, R], outcome: R | Failed) -> None:
    if pending.future.done():  # its caller withdrew while the flush ran
        return
    if isinstance(outcome, Failed):
        pending.future.set_exception(outcome.error)
    else:
        pending.future.set_result(outcome)


def _unread(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of a write whose caller left as read (its error is not logged)."""
    if not future.cancelled():
        future.exception()


def _fail(pending: _Pending[W, R], exc: BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        pending.future.cancel()
    else:
        pending.future.set_exception(exc)
