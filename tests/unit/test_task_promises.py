"""The book of slots a task runner promises to tasks its own process's decisions add."""

from __future__ import annotations

from cereal import Manager
from cereal.drivers.base import ClaimingPromise, ClaimTerms
from cereal.drivers.memory import MemoryDriver
from cereal.engine.task_promises import TaskPromises
from tests.plugins.manager import FAST_OPTIONS, eventually


class Book:
    def __init__(self, *, room: int | None = None) -> None:
        self.woken = 0
        self.handed_on = 0
        self.room = room
        self.taken: list[object] = []
        self.promises = TaskPromises(
            on_owed=self.wake,
            hand_on=self.hand_on,
            claim_terms=None if room is None else self.terms,
            take_claimed=None if room is None else self.take,
        )

    def terms(self, wanted: int) -> ClaimTerms | None:
        assert self.room is not None
        room = min(wanted, self.room)
        return ClaimTerms("t", room, 60.0, None) if room > 0 else None

    async def take(self, claimed: list[object]) -> None:
        self.taken.extend(claimed)

    def wake(self) -> None:
        self.woken += 1

    def hand_on(self) -> None:
        self.handed_on += 1


def test_a_promise_keeps_one_slot_spare() -> None:
    book = Book()
    assert book.promises.promise(3, free=3) is None  # would fill the runner
    assert book.promises.promise(0, free=3) is None
    assert book.promises.promise(2, free=3) is not None
    assert book.promises.promise(1, free=3) is None  # 2 already promised, 1 spare needed


def test_settling_makes_the_tasks_owed_and_wakes_the_runner_once() -> None:
    book = Book()
    promise = book.promises.promise(2, free=8)
    assert promise is not None
    promise.settle()
    promise.settle()
    assert (book.promises.promised, book.promises.owed, book.woken) == (0, 2, 1)


def test_a_short_claim_discharges_what_was_owed_when_it_began() -> None:
    book = Book()
    first = book.promises.promise(1, free=8)
    assert first is not None
    first.settle()
    owed_at_start = book.promises.claim_started()
    later = book.promises.promise(1, free=8)  # settles while the claim is in flight
    assert later is not None
    later.settle()
    book.promises.claim_ended(owed_at_start, filled=False)
    assert book.promises.owed == 1  # the later one needs a claim of its own
    assert book.handed_on == 0


def test_a_filling_claim_hands_owed_tasks_on() -> None:
    book = Book()
    promise = book.promises.promise(1, free=4)
    assert promise is not None
    promise.settle()
    book.promises.claim_ended(book.promises.claim_started(), filled=True)
    assert (book.promises.owed, book.handed_on) == (0, 1)
    book.promises.claim_ended(book.promises.claim_started(), filled=True)
    assert book.handed_on == 1  # nothing owed: nothing to announce


def test_a_runner_that_cannot_claim_hands_owed_tasks_on() -> None:
    book = Book()
    promise = book.promises.promise(1, free=4)
    assert promise is not None
    promise.settle()
    book.promises.cannot_claim()
    assert (book.promises.owed, book.handed_on) == (0, 1)


def test_after_close_nothing_is_promised_and_late_settles_are_handed_on() -> None:
    book = Book()
    pending = book.promises.promise(1, free=4)
    assert pending is not None
    book.promises.close()
    assert book.promises.promise(1, free=4) is None
    pending.settle()
    assert (book.promises.owed, book.handed_on, book.woken) == (0, 1, 0)


def test_a_promise_made_while_a_filling_claim_was_in_flight_is_handed_on() -> None:
    # Given a claim in flight, then a promise (the runner still looked free)
    book = Book()
    owed_at_start = book.promises.claim_started()
    promise = book.promises.promise(2, free=4)
    assert promise is not None
    # When the claim fills the runner with other work, then the promise's commit ends
    book.promises.claim_ended(owed_at_start, filled=True)
    promise.settle()
    # Then its tasks are announced to other processes, not left owed to a full runner
    assert (book.promises.owed, book.handed_on, book.woken) == (0, 1, 0)


def test_a_promise_made_after_a_filling_claim_is_kept() -> None:
    book = Book()
    book.promises.claim_ended(book.promises.claim_started(), filled=True)
    promise = book.promises.promise(1, free=4)  # slots freed since
    assert promise is not None
    promise.settle()
    assert (book.promises.owed, book.handed_on, book.woken) == (1, 0, 1)


async def test_a_runner_whose_loop_crashed_promises_nothing_more() -> None:
    manager = Manager(MemoryDriver(), **FAST_OPTIONS)
    manager.register_task_executor("t", lambda task: None, workers=4)
    async with manager:
        runner = manager._task_runners["t"]
        before = runner.promise(1)
        assert before is not None
        before.settle()

        async def crash() -> None:
            raise RuntimeError("a bug in the claim loop")

        runner._fill = crash  # type: ignore[method-assign]
        runner.wake()
        # a dead runner must not keep tasks from being announced to other processes
        await eventually(lambda: runner.promise(1) is None, what="the promises to close")


def _claiming(book: Book, count: int, free: int) -> ClaimingPromise:
    promise = book.promises.promise(count, free=free)
    assert isinstance(promise, ClaimingPromise)
    return promise


async def test_a_commit_claim_asks_for_one_task_more_than_promised() -> None:
    book = Book(room=8)
    promise = _claiming(book, 2, free=8)
    terms = promise.claim_terms()
    assert terms is not None and terms.max_tasks == 3


async def test_a_short_commit_claim_leaves_nothing_owed_and_wakes_nobody() -> None:
    # Given a task owed from an earlier commit, then a promise of one more
    book = Book(room=8)
    earlier = _claiming(book, 1, free=8)
    earlier.settle()
    assert book.promises.owed == 1
    promise = _claiming(book, 1, free=8)
    assert promise.claim_terms() is not None
    # When its commit's claim comes back short (it took every ready task)
    await promise.deliver(["task-a", "task-b"][:1])
    promise.settle()
    # Then the runner has the task, owes nothing and is not sent to claim again
    assert book.taken == ["task-a"]
    assert (book.promises.promised, book.promises.owed, book.woken) == (0, 0, 1)


async def test_a_full_commit_claim_leaves_the_promised_tasks_owed() -> None:
    book = Book(room=8)
    promise = _claiming(book, 1, free=8)
    terms = promise.claim_terms()
    assert terms is not None
    await promise.deliver(["older-1", "older-2"])  # as many as asked: more may be queued
    promise.settle()
    assert book.taken == ["older-1", "older-2"]
    assert (book.promises.owed, book.woken) == (1, 1)


async def test_a_promise_whose_commit_did_not_claim_settles_as_any_other() -> None:
    book = Book(room=0)  # the runner filled up before the commit: no claim terms
    promise = _claiming(book, 1, free=8)
    assert promise.claim_terms() is None
    promise.settle()
    assert (book.promises.owed, book.woken, book.taken) == (1, 1, [])


async def test_a_delivery_without_a_claim_is_refused() -> None:
    book = Book(room=8)
    promise = _claiming(book, 1, free=8)
    try:
        await promise.deliver([])
    except RuntimeError:
        pass
    else:
        raise AssertionError("a delivery nobody asked for was taken")


async def test_a_delivery_the_runner_failed_to_take_leaves_the_promise_owed() -> None:
    # Given a promise whose commit claimed fewer tasks than asked (a short claim)
    book = Book(room=8)

    async def failing_take(claimed: list[object]) -> None:
        raise RuntimeError("the runner could not take them")

    book.promises = TaskPromises(
        on_owed=book.wake, hand_on=book.hand_on, claim_terms=book.terms, take_claimed=failing_take
    )
    promise = _claiming(book, 1, free=8)
    assert promise.claim_terms() is not None
    # When the runner fails to take them (the store gives them back to the queue)
    try:
        await promise.deliver(["task-a"])
    except RuntimeError:
        pass
    promise.settle()
    # Then they are owed, as if the commit had not claimed: the runner looks again
    assert (book.promises.promised, book.promises.owed, book.woken) == (0, 1, 1)
