"""The book of slots a task runner promises to tasks its own process's decisions add."""

from __future__ import annotations

from cereal.engine.task_promises import TaskPromises


class Book:
    def __init__(self) -> None:
        self.woken = 0
        self.handed_on = 0
        self.promises = TaskPromises(on_owed=self.wake, hand_on=self.hand_on)

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
