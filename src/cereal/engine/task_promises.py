"""Slots a task runner promises to tasks its own process's decisions add.

A decision that enqueues ready tasks announces them; PostgreSQL's NOTIFY
costs a commit in every listening session, so when an idle runner of the
deciding process will take the tasks, the store tells this process only (see
``Driver.add_task_taker``). The runner promises the slots before the commit
and is owed a claim once the commit ends. Every promised task is in the queue
like any other, so nothing can be lost, only left waiting for a poll; the
rules below keep even that from happening:

- a promise keeps at least one slot spare, so a runner that fills up after
  being owed tasks must have taken other work, not only the promised tasks;
- a claim that comes back short took every owed task committed before it
  began;
- a claim that fills the runner, or a runner that stops claiming while owed
  tasks, hands them on: they are announced to other processes then, as they
  would have been at the commit; so are the tasks of promises made before
  such a claim ended (one in flight as the promise was made) once their
  commit ends.

A promise made while the runner has no claim of its own in flight may also
ask the store to claim the tasks inside the commit that adds them (a
:class:`~cereal.drivers.base.PromisedClaim`): the store delivers what it
claimed before settling, and only the rest is owed. Such a promise reserves
its slots: the runner's own claims leave them free (:attr:`TaskPromises.reserved`),
so a delivery never takes the runner past its ``workers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cereal.drivers.base import PromisedClaim, TaskCompleter
    from cereal.models import TaskData

Delivered = list[tuple["TaskData", "TaskCompleter"]]
"""Tasks a store claimed for a promise in its commit, with their completers."""


class TaskPromises:
    """The book of one runner's promised and owed slots.

    Args:
        on_owed: called when promised tasks become owed (look for them now).
        hand_on: called when owed tasks must be announced to other processes.
    """

    def __init__(self, on_owed: Callable[[], None], hand_on: Callable[[], None]) -> None:
        self._on_owed = on_owed
        self._hand_on = hand_on
        self._closed = False
        self._fills = 0  # claims that filled the runner (or it could not claim) so far
        self.promised = 0
        """Slots held for tasks whose commit is in progress."""
        self.owed = 0
        """Tasks committed for this runner and not yet known to be claimed."""
        self.reserved = 0
        """Slots of promises whose store may claim for them: the runner's own claims skip them."""

    def promise(
        self,
        count: int,
        free: int,
        *,
        claim: PromisedClaim | None = None,
        deliver: Callable[[Delivered], None] | None = None,
    ) -> Promise | None:
        """Hold ``count`` of the runner's ``free`` slots, if one would still be spare.

        With ``claim`` (and ``deliver``, which starts delivered tasks) the
        store may claim the tasks in its commit; the slots are reserved.
        """
        if self._closed or count <= 0 or free - self.promised - self.owed <= count:
            return None
        self.promised += count
        if claim is None or deliver is None:
            return Promise(self, count, self._fills)
        self.reserved += count
        return Promise(self, count, self._fills, claim=claim, deliver=deliver)

    def settled(
        self,
        count: int,
        fills_when_made: int,
        *,
        delivered: int = 0,
        reserved: bool = False,
        passed_over: bool = False,
    ) -> None:
        """A promise's commit ended: its tasks (if committed) not delivered are owed a claim.

        When the runner was filled (or could not claim) after the promise was
        made, its free slots went to other work: the tasks are handed on. A
        reserved promise's slots were left out of those claims: they are still
        free for its tasks. A delivery that ``passed_over`` promised tasks
        (its claim was full of older ones) hands them on too.
        """
        self.promised -= count
        if reserved:
            self.reserved -= count
        if passed_over:  # promised tasks may still be queued, with no slot here for them
            self._hand_on()
            return
        left = count - delivered
        if left <= 0:
            return
        if self._closed or (self._fills != fills_when_made and not reserved):
            self._hand_on()
            return
        self.owed += left
        self._on_owed()

    def claim_started(self) -> int:
        """How many tasks are owed as a claim begins (pass to :meth:`claim_ended`)."""
        return self.owed

    def claim_ended(self, owed_at_start: int, *, filled: bool) -> None:
        """A claim returned; ``filled``: it took every free slot (more may be queued)."""
        if filled:
            self._fills += 1
            self._hand_on_owed()
        else:
            self.owed = max(0, self.owed - owed_at_start)

    def cannot_claim(self) -> None:
        """The runner will not claim for now (at its stray-thread cap): hand owed tasks on."""
        self._fills += 1
        self._hand_on_owed()

    def close(self) -> None:
        """The runner stops claiming: hand owed tasks on, and every later settle too."""
        self._closed = True
        self._hand_on_owed()

    def _hand_on_owed(self) -> None:
        if self.owed:
            self.owed = 0
            self._hand_on()


class Promise:
    """``count`` slots held until the commit that adds their tasks ends."""

    def __init__(
        self,
        book: TaskPromises,
        count: int,
        fills_when_made: int,
        *,
        claim: PromisedClaim | None = None,
        deliver: Callable[[Delivered], None] | None = None,
    ) -> None:
        self._book = book
        self._count = count
        self._fills_when_made = fills_when_made
        self._claim = claim
        self._deliver = deliver
        self._delivered = 0
        self._passed_over = False
        self._took_delivery = False
        self._settled = False

    def claim_request(self) -> PromisedClaim | None:
        """What the store may claim for this promise in its commit (see the module)."""
        return None if self._settled or self._took_delivery else self._claim

    def deliver(self, tasks: Delivered, *, passed_over: bool = False) -> None:
        """Start the tasks the store claimed for this promise (once, before :meth:`settle`).

        ``passed_over``: the claim was full of older tasks; the promised ones
        still queued are announced to other processes when the promise settles.

        Raises:
            RuntimeError: more tasks than the promise reserved, a second
                delivery, or one after the promise settled or without a claim.
        """
        if self._claim is None or self._deliver is None or self._settled or self._took_delivery:
            raise RuntimeError("this promise takes no delivery now")
        if len(tasks) > self._count:
            raise RuntimeError(f"{len(tasks)} tasks delivered for {self._count} promised slots")
        self._took_delivery = True
        self._delivered = len(tasks)
        self._passed_over = passed_over
        if tasks:
            self._deliver(tasks)

    def settle(self) -> None:
        """The commit ended (committed or failed): look for the tasks now; idempotent."""
        if not self._settled:
            self._settled = True
            self._book.settled(
                self._count,
                self._fills_when_made,
                delivered=self._delivered,
                reserved=self._claim is not None and self._deliver is not None,
                passed_over=self._passed_over,
            )
