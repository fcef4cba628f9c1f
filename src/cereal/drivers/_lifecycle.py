"""Opening, closing and wakeups: the part of the driver contract every driver inherits as is.

``init`` and ``close`` are reference-counted, so several Managers of one
process can share a driver, and a driver supports ``init -> close -> init``
cycles. A driver implements only :meth:`StoreLifecycle._open` and
:meth:`StoreLifecycle._close`.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from cereal.drivers._task_store import TaskCompleter
    from cereal.models import TaskData

logger = logging.getLogger(__name__)

WorkKind = Literal["workflow", "task", "schedule"]
"""What kind of work a wakeup announces."""

WakeupListener = Callable[[WorkKind, str | None], None]
"""Called with the kind of new work and its name (``None``: any name).

Listeners may be called from any thread and must be cheap and thread-safe.
"""

Wakeup = tuple[WorkKind, str | None]
"""One announcement: a kind of work and its name (``None``: any name)."""


class LocalPromise(Protocol):
    """Slots a local task runner holds for tasks a commit in progress adds.

    The store calls :meth:`settle` once the commit has ended, whether it
    committed or failed: the runner then looks for the tasks.
    """

    def settle(self) -> None:
        """The commit ended; look for the promised tasks now."""


@dataclass(frozen=True)
class ClaimTerms:
    """How a promising runner claims: what :meth:`Driver.dequeue_tasks` would be asked."""

    task_name: str
    max_tasks: int
    """At most this many (more than the promised tasks: a claim short of it took them all)."""
    task_expiry: float
    retry_policy: str | None


@runtime_checkable
class ClaimingPromise(LocalPromise, Protocol):
    """A promise whose runner also takes tasks claimed in the commit that adds them.

    A store that can claim in the same transaction as the writes that add the
    tasks asks :meth:`claim_terms` before it commits, claims as a dequeue
    would, and after the commit hands the claimed tasks to :meth:`deliver`,
    before :meth:`settle`. The runner then starts them without a claim of its
    own (one round trip and one commit fewer before a task starts).
    """

    def claim_terms(self) -> ClaimTerms | None:
        """The claim to make now, or ``None`` when the runner takes no tasks this way."""

    async def deliver(self, claimed: list[tuple[TaskData, TaskCompleter]]) -> None:
        """The tasks the committed claim took (possibly none); they are the runner's now."""


TaskTaker = Callable[[str, int], "LocalPromise | None"]
"""Asked ``(task_name, count)`` before a commit adds ``count`` ready tasks of that name.

Returns a promise when a runner of this process will take them all (so no
other process need be told), else ``None``. Called on the committing event
loop's thread; a taker whose runners live on another loop answers ``None``.
"""

# Capabilities a driver may declare; tests needing one skip on drivers without it.
DURABLE = "durable"  # survives a process restart
MULTIPROCESS = "multiprocess"  # several processes may share the store safely
RESUMABLE_LEASES = "resumable_leases"  # a lease is taken up again by its token (resume_task_lease)


async def _wait_for(pending: concurrent.futures.Future[None]) -> None:
    """Wait for another caller's open/close to end; cancelling this wait leaves it running."""
    await asyncio.shield(asyncio.wrap_future(pending))


class StoreLifecycle(abc.ABC):
    """Reference-counted open/close, migrations and the wakeup listener registry."""

    def __init__(self) -> None:
        self._open_count = 0
        self._open_lock = threading.Lock()
        # the open or last close in progress; a concurrent Future because a driver may be
        # shared across event loops (e.g. one per thread), which an asyncio.Lock cannot span
        self._transition: concurrent.futures.Future[None] | None = None
        self._listeners: list[WakeupListener] = []
        self._takers: list[TaskTaker] = []

    # ---- lifecycle -------------------------------------------------------------

    async def init(self) -> None:
        """Open the store (and apply pending migrations) unless already open.

        Returns only once the store is open: a call made while another user's
        open (or the last close) is in progress waits for it. If that open
        fails, the waiting call tries to open the store itself.
        """
        while True:
            with self._open_lock:
                pending = self._transition
                if pending is None:
                    if self._open_count > 0:
                        self._open_count += 1
                        return
                    pending = self._transition = concurrent.futures.Future()
                    mine = True
                else:
                    mine = False
            if not mine:
                await _wait_for(pending)
                continue  # look again: open now, or the open failed and this call tries
            try:
                await self._open()
            except BaseException:
                self._end_transition(pending, count=0)
                raise
            self._end_transition(pending, count=1)
            return

    async def close(self) -> None:
        """Release one ``init``; the last one closes the store. Idempotent when closed."""
        while True:
            with self._open_lock:
                pending = self._transition
                if pending is None:
                    if self._open_count == 0:
                        return
                    self._open_count -= 1
                    if self._open_count > 0:
                        return
                    pending = self._transition = concurrent.futures.Future()
                    mine = True
                else:
                    mine = False
            if not mine:
                await _wait_for(pending)
                continue
            try:
                await self._close()
            finally:
                self._end_transition(pending, count=0)
            return

    def _end_transition(self, pending: concurrent.futures.Future[None], *, count: int) -> None:
        with self._open_lock:
            self._open_count = count
            self._transition = None
        pending.set_result(None)

    @property
    def is_open(self) -> bool:
        """True between the first ``init`` and the matching last ``close``."""
        return self._open_count > 0

    async def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied (none for memory)."""
        await self.init()
        await self.close()
        return []

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and migrate (called on the first ``init``)."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Disconnect (called on the last ``close``)."""

    async def __aenter__(self) -> Self:
        await self.init()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- wakeups ---------------------------------------------------------------

    def add_wakeup_listener(self, listener: WakeupListener) -> None:
        """Call ``listener`` whenever this driver learns of new ready work."""
        with self._open_lock:
            self._listeners.append(listener)
        self._wakeup_listeners_changed()

    def remove_wakeup_listener(self, listener: WakeupListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._open_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
        self._wakeup_listeners_changed()

    @property
    def _has_wakeup_listeners(self) -> bool:
        with self._open_lock:
            return bool(self._listeners)

    def _wakeup_listeners_changed(self) -> None:
        """Called after a wakeup listener came or went (a store may listen only while any do)."""
        return  # stores whose wakeups cost nothing while unheard need not follow

    def add_task_taker(self, taker: TaskTaker) -> None:
        """Let ``taker`` keep new tasks from being announced to other processes.

        A store whose announcements cost something per process (PostgreSQL's
        NOTIFY costs a commit in every listening session) asks its takers
        before a commit that adds ready tasks; tasks a local runner promises
        to take are announced to this process only. Other stores need not ask.
        """
        with self._open_lock:
            self._takers.append(taker)

    def remove_task_taker(self, taker: TaskTaker) -> None:
        """Stop asking ``taker``; unknown takers are ignored."""
        with self._open_lock:
            if taker in self._takers:
                self._takers.remove(taker)

    def announce_elsewhere(self, kind: WorkKind, name: str | None) -> None:
        """Tell other processes about ready work a local promise could not cover.

        A runner that promised tasks but was filled by other work first calls
        this, so an idle runner elsewhere takes them. Returns at once; the
        announcement is sent in the background. Stores that never ask their
        takers (their announcements cost nothing extra) do nothing.
        """
        return  # nothing to send: this store never asked its takers

    def _promise_locally(self, wakes: Iterable[Wakeup]) -> tuple[list[Wakeup], list[LocalPromise]]:
        """Split ``wakes`` into those to announce to other processes and local promises.

        Each task name's ready tasks (one wake per task) are offered to the
        takers as one count; a name no taker promises stays in the first list.
        """
        wakes = list(wakes)
        with self._open_lock:
            takers = list(self._takers)
        counts = Counter(name for kind, name in wakes if kind == "task" and name is not None)
        if not takers or not counts:
            return wakes, []
        kept: set[str] = set()
        promises: list[LocalPromise] = []
        for name, count in counts.items():
            for taker in takers:
                promise = taker(name, count)
                if promise is not None:
                    promises.append(promise)
                    kept.add(name)
                    break
        remote = [wake for wake in wakes if not (wake[0] == "task" and wake[1] in kept)]
        return remote, promises

    def _wake(self, kind: WorkKind, name: str | None = None) -> None:
        """Tell every listener about new work (call after the commit that made it)."""
        with self._open_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind, name)
            except Exception:  # a broken listener must not break the driver
                logger.exception("wakeup listener failed")
