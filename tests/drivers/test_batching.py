"""The group commit primitive shared by the SQL stores (``cereal.drivers._batching``).

Interleavings are forced, never hoped for: a flush is held open on an
``asyncio.Event`` while more writes queue behind it, and the test waits on
what it can observe (the flush entered, the writes queued) by yielding to the
event loop, not by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from cereal import errors
from cereal.drivers._batching import Batcher, Failed

NAME = "test-batcher"


class Store:
    """A flush that records every group it is given; the first can be held open."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.groups: list[list[str]] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        if not hold_first:
            self.gate.set()
        self.bad: set[str] = set()  # a group holding one of these fails as a whole
        self.refused: set[str] = set()  # these fail alone, their group commits

    async def flush(self, group: Sequence[str]) -> list[str | Failed]:
        self.groups.append(list(group))
        self.entered.set()
        await self.gate.wait()
        if self.bad.intersection(group):
            raise errors.DriverError(f"group {list(group)} failed")
        return [
            Failed(errors.TaskLostError(write)) if write in self.refused else write.upper()
            for write in group
        ]

    def committed(self) -> list[str]:
        return [write for group in self.groups for write in group]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the event loop until ``condition`` holds (no timed sleep)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def hold_first_flush(batcher: Batcher[str, str], store: Store) -> asyncio.Task[str]:
    """Start write ``a`` and wait until its flush is running (held by the store's gate)."""
    first = asyncio.ensure_future(batcher.run("a"))
    await store.entered.wait()
    return first


def spawn(batcher: Batcher[str, str], *writes: str) -> list[asyncio.Task[str]]:
    return [asyncio.ensure_future(batcher.run(write)) for write in writes]


async def test_a_lone_write_is_flushed_at_once_and_gets_its_result() -> None:
    store = Store()
    batcher = Batcher(store.flush, name=NAME)

    assert await batcher.run("a") == "A"
    assert store.groups == [["a"]]


async def test_writes_queued_behind_a_running_flush_form_the_next_group() -> None:
    # Given a first flush held open
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME)
    first = await hold_first_flush(batcher, store)

    # When more writes arrive meanwhile
    later = spawn(batcher, "b", "c", "d")
    await until(lambda: batcher.pending == 3, "three writes queued")
    assert store.groups == [["a"]]  # one flush in flight at a time
    assert not first.done()  # its caller waits for the commit
    store.gate.set()

    # Then they formed one second group, and each caller got its own result
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", "D"]
    assert store.groups == [["a"], ["b", "c", "d"]]


async def test_writes_arriving_together_share_the_first_group() -> None:
    store = Store()
    batcher = Batcher(store.flush, name=NAME)

    assert await asyncio.gather(*spawn(batcher, "a", "b", "c")) == ["A", "B", "C"]
    assert store.groups == [["a", "b", "c"]]


async def test_max_group_splits_a_long_queue_and_sort_key_orders_each_group() -> None:
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME, max_group=2, sort_key=lambda write: -ord(write))
    first = await hold_first_flush(batcher, store)
    later = spawn(batcher, "b", "c", "d", "e", "f")
    await until(lambda: batcher.pending == 5, "five writes queued")
    store.gate.set()

    assert await asyncio.gather(first, *later) == ["A", "B", "C", "D", "E", "F"]
    assert store.groups == [["a"], ["c", "b"], ["e", "d"], ["f"]]


async def test_a_write_failed_by_its_flush_fails_only_its_caller() -> None:
    store = Store()
    store.refused = {"b"}
    batcher = Batcher(store.flush, name=NAME)

    outcomes = await asyncio.gather(*spawn(batcher, "a", "b", "c"), return_exceptions=True)

    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], errors.TaskLostError)
    assert store.groups == [["a", "b", "c"]]


async def test_a_failing_group_is_retried_write_by_write_and_only_the_bad_write_fails() -> None:
    store = Store()
    store.bad = {"b"}
    batcher = Batcher(store.flush, name=NAME, retry_alone=True)

    outcomes = await asyncio.gather(*spawn(batcher, "a", "b", "c"), return_exceptions=True)

    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], errors.DriverError)
    assert "['b']" in str(outcomes[1])  # its own error, from its flush alone
    assert store.groups == [["a", "b", "c"], ["a"], ["b"], ["c"]]


async def test_a_lone_write_whose_flush_fails_is_retried_once() -> None:
    # (a pooled connection found dead fails the flush without running it)
    attempts: list[Sequence[str]] = []

    async def dies_once(group: Sequence[str]) -> list[str | Failed]:
        attempts.append(list(group))
        if len(attempts) == 1:
            raise errors.DriverError("the connection died")
        return [write.upper() for write in group]

    batcher = Batcher(dies_once, name=NAME, retry_alone=True)

    assert await batcher.run("a") == "A"
    assert attempts == [["a"], ["a"]]


async def test_without_retry_a_failing_group_fails_every_caller_and_the_next_group_runs() -> None:
    store = Store(hold_first=True)
    store.bad = {"b"}
    batcher = Batcher(store.flush, name=NAME)
    first = await hold_first_flush(batcher, store)
    failing = spawn(batcher, "b", "c")
    await until(lambda: batcher.pending == 2, "two writes queued")
    store.gate.set()
    assert await first == "A"

    outcomes = await asyncio.gather(*failing, return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [errors.DriverError] * 2
    assert outcomes[0] is outcomes[1]  # the group's one error
    assert await batcher.run("d") == "D"
    assert store.groups == [["a"], ["b", "c"], ["d"]]


async def test_a_flush_giving_the_wrong_number_of_results_fails_its_group() -> None:
    async def short(group: Sequence[str]) -> list[str | Failed]:
        return ["x"]

    batcher = Batcher(short, name=NAME)

    outcomes = await asyncio.gather(*spawn(batcher, "a", "b"), return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


@pytest.mark.parametrize("withdraw", [False, True])
async def test_a_caller_cancelled_during_its_flush_neither_loses_nor_doubles_the_write(
    withdraw: bool,
) -> None:
    # Given a caller whose write is in a flush held open
    store = Store(hold_first=True)
    store.bad = {"a"}  # its group fails: a retry must not run it twice either
    batcher = Batcher(store.flush, name=NAME, retry_alone=True, withdraw_cancelled=withdraw)
    first = await hold_first_flush(batcher, store)

    # When it is cancelled, then the flush ends
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    store.gate.set()
    await batcher.drain()

    # Then the write was flushed in its group and retried alone once, as for any caller
    assert store.groups == [["a"], ["a"]]
    assert await batcher.run("b") == "B"


async def test_a_cancelled_caller_keeps_its_queued_write_by_default() -> None:
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME)
    first = await hold_first_flush(batcher, store)
    [queued, other] = spawn(batcher, "b", "c")
    await until(lambda: batcher.pending == 2, "two writes queued")

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    store.gate.set()

    assert await first == "A" and await other == "C"
    assert store.groups == [["a"], ["b", "c"]]  # the write still committed, once


async def test_a_withdrawing_caller_cancelled_while_queued_takes_its_write_back() -> None:
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME, withdraw_cancelled=True)
    first = await hold_first_flush(batcher, store)
    [queued, other] = spawn(batcher, "b", "c")
    await until(lambda: batcher.pending == 2, "two writes queued")

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert batcher.pending == 1
    store.gate.set()

    assert await first == "A" and await other == "C"
    assert store.groups == [["a"], ["c"]]  # "b" never ran


async def test_a_withdrawn_write_is_skipped_even_when_the_flush_takes_the_queue_first() -> None:
    # The caller's future is cancelled at once, but its coroutine (which takes the write
    # out of the queue) runs later: a flush that starts in between must skip the write.
    store = Store()
    batcher = Batcher(store.flush, name=NAME, withdraw_cancelled=True)
    [withdrawn, kept] = spawn(batcher, "a", "b")
    await until(lambda: batcher.pending == 2, "two writes queued")

    withdrawn.cancel()  # the flusher task was scheduled before the cancelled caller resumes
    assert await kept == "B"
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    assert store.groups == [["b"]]


async def test_drain_waits_for_the_flush_in_flight_and_everything_queued_behind_it() -> None:
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME)
    await batcher.drain()  # nothing queued: returns at once
    first = await hold_first_flush(batcher, store)
    later = spawn(batcher, "b", "c")
    await until(lambda: batcher.pending == 2, "two writes queued")

    draining = asyncio.ensure_future(batcher.drain())
    await until(lambda: store.groups == [["a"]], "the first flush running")
    assert not draining.done()
    store.gate.set()
    await draining

    assert first.done() and all(task.done() for task in later)
    assert store.groups == [["a"], ["b", "c"]]
    assert batcher.pending == 0


async def test_cancelling_a_drain_does_not_cancel_the_flush() -> None:
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME)
    first = await hold_first_flush(batcher, store)

    draining = asyncio.ensure_future(batcher.drain())
    await asyncio.sleep(0)  # one turn of the loop (FIFO): the drain is now waiting
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    store.gate.set()

    assert await first == "A"


async def test_a_cancelled_flush_fails_every_waiting_caller() -> None:
    # (the event loop closing cancels the flushing task: nobody may wait forever)
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME)
    first = await hold_first_flush(batcher, store)
    later = spawn(batcher, "b", "c")
    await until(lambda: batcher.pending == 2, "two writes queued")

    [flusher] = [task for task in asyncio.all_tasks() if task.get_name() == NAME]
    flusher.cancel()
    outcomes = await asyncio.gather(first, *later, return_exceptions=True)

    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert batcher.pending == 0
    assert store.groups == [["a"]]
    store.gate.set()
    assert await batcher.run("d") == "D"  # a later write starts a new flush


def test_max_group_must_be_positive() -> None:
    async def flush(group: Sequence[str]) -> list[str | Failed]:
        return list(group)

    with pytest.raises(ValueError, match="max_group"):
        Batcher(flush, name=NAME, max_group=0)


# ---- gather window: a busy process waits a little for more writes ----------------------


async def test_a_lone_write_after_a_lone_write_never_waits_for_the_gather_window() -> None:
    store = Store()
    batcher = Batcher(store.flush, name=NAME, gather_window=3600.0)
    async with asyncio.timeout(30):  # a wait for the window would never end here
        assert await batcher.run("a") == "A"
        assert await batcher.run("b") == "B"
    assert store.groups == [["a"], ["b"]]


async def test_after_a_group_of_three_a_flush_waits_until_three_are_queued() -> None:
    # Given a busy batcher whose last group held three writes
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME, gather_window=3600.0)
    first = await hold_first_flush(batcher, store)
    group = spawn(batcher, "b", "c", "d")
    await until(lambda: batcher.pending == 3, "three writes queued")
    store.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*group) == ["B", "C", "D"]

    # When one write comes, the flush waits for more instead of sending it alone
    late = spawn(batcher, "e")
    for _ in range(100):
        await asyncio.sleep(0)
    assert store.groups == [["a"], ["b", "c", "d"]]
    assert not late[0].done()

    # Then two more make a group of three, sent at once
    more = spawn(batcher, "f", "g")
    assert await asyncio.gather(*late, *more) == ["E", "F", "G"]
    assert store.groups[-1] == ["e", "f", "g"]


async def test_the_gather_window_ends_and_a_smaller_group_is_sent() -> None:
    store = Store(hold_first=True)
    batcher = Batcher(store.flush, name=NAME, gather_window=0.01)
    first = await hold_first_flush(batcher, store)
    group = spawn(batcher, "b", "c")
    await until(lambda: batcher.pending == 2, "two writes queued")
    store.gate.set()
    await asyncio.gather(first, *group)
    # only one more write ever comes: it is sent once the window has passed
    assert await batcher.run("d") == "D"
    assert store.groups == [["a"], ["b", "c"], ["d"]]
