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

A store that can claim in the commit itself (PostgreSQL's decision groups)
asks the promise for its runner's claim terms, for one task more than
promised, and delivers what it took: a claim that came back short took
every task it could (a key at its limit, a full rate window or a locked row
may keep some back, exactly as from a plain claim that comes back short),
so nothing is owed; a full one leaves the promised tasks owed, as a plain
commit does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cereal.drivers.base import ClaimTerms

if TYPE_CHECKING:
    from cereal.drivers.base import TaskCompleter
    from cereal.models import TaskData

Claimed = list[tuple["TaskData", "TaskCompleter"]]
ClaimTermsFor = Callable[[int], ClaimTerms | None]
"""The runner's claim terms for up to that many tasks, or ``None`` (it claims none now)."""
TakeClaimed = Callable[[Claimed], Awaitable[None]]
"""The runner takes tasks claimed for it (starts them, or gives them back if it stopped)."""


class TaskPromises:
    """The book of one runner's promised and owed slots.

    Args:
        on_owed: called when promised tasks become owed (look for them now).
        hand_on: called when owed tasks must be announced to other processes.
        claim_terms: the runner's terms for a claim made in the commit itself;
            ``None``: its promises are kept by plain claims only.
        take_claimed: the runner takes the tasks such a claim took.
    """

    def __init__(
        self,
        on_owed: Callable[[], None],
        hand_on: Callable[[], None],
        claim_terms: ClaimTermsFor | None = None,
        take_claimed: TakeClaimed | None = None,
    ) -> None:
        self._on_owed = on_owed
        self._hand_on = hand_on
        self._claim_terms = claim_terms
        self._take_claimed = take_claimed
        self._closed = False
        self._fills = 0  # claims that filled the runner (or it could not claim) so far
        self.promised = 0
        """Slots held for tasks whose commit is in progress."""
        self.owed = 0
        """Tasks committed for this runner and not yet known to be claimed."""

    def promise(self, count: int, free: int) -> Promise | None:
        """Hold ``count`` of the runner's ``free`` slots, if one would still be spare."""
        if self._closed or count <= 0 or free - self.promised - self.owed <= count:
            return None
        self.promised += count
        if self._claim_terms is not None and self._take_claimed is not None:
            return CommitClaimPromise(self, count, self._fills, self.owed)
        return Promise(self, count, self._fills)

    def settled(self, count: int, fills_when_made: int) -> None:
        """A promise's commit ended: its tasks (if committed) are owed a claim.

        When the runner was filled (or could not claim) after the promise was
        made, its free slots went to other work: the tasks are handed on.
        """
        self.promised -= count
        if self._closed or self._fills != fills_when_made:
            self._hand_on()
            return
        self.owed += count
        self._on_owed()

    def commit_claim_terms(self, wanted: int) -> ClaimTerms | None:
        """The runner's terms for a claim of up to ``wanted`` tasks in a commit, or ``None``."""
        return None if self._claim_terms is None else self._claim_terms(wanted)

    async def take_commit_claimed(self, claimed: Claimed) -> None:
        """The runner takes the tasks a commit claimed for it."""
        if self._take_claimed is None:
            raise RuntimeError("this runner takes no tasks claimed in a commit")
        await self._take_claimed(claimed)

    def settled_by_a_short_claim(self, count: int, owed_when_made: int) -> None:
        """A promise's commit claimed, and came back short: it took every task it could.

        As after a plain claim that comes back short, nothing is owed of the
        promised tasks or of those owed when the promise was made (committed
        before that claim began).
        """
        self.promised -= count
        self.owed = max(0, self.owed - owed_when_made)

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

    def __init__(self, book: TaskPromises, count: int, fills_when_made: int) -> None:
        self._book = book
        self._count = count
        self._fills_when_made = fills_when_made
        self._settled = False

    def settle(self) -> None:
        """The commit ended (committed or failed): look for the tasks now; idempotent."""
        if not self._settled:
            self._settled = True
            self._book.settled(self._count, self._fills_when_made)


class CommitClaimPromise(Promise):
    """A promise whose tasks the committing store may claim for the runner in the commit.

    The store asks :meth:`claim_terms` (for one task more than promised),
    claims in the commit, calls :meth:`deliver` with what it took, then
    :meth:`settle`.
    """

    def __init__(
        self, book: TaskPromises, count: int, fills_when_made: int, owed_when_made: int
    ) -> None:
        super().__init__(book, count, fills_when_made)
        self._owed_when_made = owed_when_made
        self._asked = 0
        self._took: int | None = None

    def claim_terms(self) -> ClaimTerms | None:
        """The runner's terms for up to one task more than promised, or ``None``."""
        if self._settled or self._took is not None:
            return None
        terms = self._book.commit_claim_terms(self._count + 1)
        self._asked = 0 if terms is None else terms.max_tasks
        return terms

    async def deliver(self, claimed: Claimed) -> None:
        """The runner takes what the committed claim took (before :meth:`settle`)."""
        if self._settled or self._asked == 0:
            raise RuntimeError("a delivery without a claim of this promise")
        # counted only once taken: tasks the runner failed to take go back to the
        # queue, and the promise then stays owed (someone must claim them again)
        await self._book.take_commit_claimed(claimed)
        self._took = len(claimed)

    def settle(self) -> None:
        """The commit ended: owed as any promise, unless its claim came back short."""
        if self._settled:
            return
        if self._took is not None and self._took < self._asked:
            self._settled = True
            self._book.settled_by_a_short_claim(self._count, self._owed_when_made)
            return
        super().settle()
