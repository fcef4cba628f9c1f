"""The announcement window: an enqueue's NOTIFY rides its commit, or waits for the window."""

from __future__ import annotations

import asyncio

from cereal.drivers.postgres._announce_window import AnnouncementWindow
from cereal.drivers.postgres._listen import Wake


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def window_of(clock: Clock) -> tuple[AnnouncementWindow, list[list[Wake]]]:
    sent: list[list[Wake]] = []
    return AnnouncementWindow(sent.append, window=0.005, clock=clock), sent


async def settle() -> None:
    """Let a window whose close is due now close (its timer fires on the next turn)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_an_isolated_enqueue_announces_in_its_own_commit() -> None:
    clock = Clock()
    window, sent = window_of(clock)
    assert window.announce_in_commit()
    clock.now += 1.0
    assert window.announce_in_commit()  # the window had closed: again in the commit
    assert sent == []


async def test_enqueues_inside_the_window_are_announced_once_when_it_closes() -> None:
    clock = Clock()
    window, sent = window_of(clock)
    assert window.announce_in_commit()
    clock.now += 0.001
    assert not window.announce_in_commit()
    window.announce_later([("workflow", "a")])
    assert not window.announce_in_commit()
    window.announce_later([("workflow", "b"), ("workflow", "a")])
    await settle()
    assert sent == []  # the window has 4 ms left
    # the close is a loop timer due in those 4 ms; a later timer fires after it
    await asyncio.sleep(0.02)
    assert sent == [[("workflow", "a"), ("workflow", "b")]]


async def test_the_deferred_announcement_opens_the_next_window() -> None:
    clock = Clock()
    window, sent = window_of(clock)
    assert window.announce_in_commit()
    clock.now += 0.006  # past the window, but its close is what announces: none pending
    assert window.announce_in_commit()
    clock.now += 0.001
    assert not window.announce_in_commit()
    clock.now += 0.005  # the window is over: the close is due at once
    window.announce_later([("workflow", "a")])
    await settle()
    assert sent == [[("workflow", "a")]]
    # that announcement was a NOTIFY: enqueues right after it wait for the next close
    assert not window.announce_in_commit()
    clock.now += 0.006
    assert window.announce_in_commit()


async def test_a_commit_that_decided_to_wait_while_a_close_is_due_is_deferred_too() -> None:
    clock = Clock()
    window, sent = window_of(clock)
    assert window.announce_in_commit()
    clock.now += 0.001
    assert not window.announce_in_commit()
    clock.now += 0.010
    window.announce_later([("workflow", "a")])  # close scheduled, not yet run
    assert not window.announce_in_commit()  # joins the close instead of its own NOTIFY
    window.announce_later([("workflow", "b")])
    await settle()
    assert sent == [[("workflow", "a"), ("workflow", "b")]]


async def test_flush_announces_what_waits_now() -> None:
    clock = Clock()
    window, sent = window_of(clock)
    assert window.announce_in_commit()
    assert not window.announce_in_commit()
    window.announce_later([("workflow", "a")])
    window.flush()
    assert sent == [[("workflow", "a")]]
    await asyncio.sleep(0.02)
    assert sent == [[("workflow", "a")]]  # the cancelled timer sends nothing more
    window.flush()  # nothing pending: nothing sent
    assert sent == [[("workflow", "a")]]
