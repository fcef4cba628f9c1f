"""Tasks a runner claimed ahead of its free slots, waiting for a slot.

A runner of short tasks pays a claim's round trip between the end of one
batch and the start of the next. While its tasks are quick, a runner claims
up to as many again as its ``workers`` beyond its free slots; the extra tasks
wait here and start the moment a slot frees, so the next claim overlaps the
running tasks instead of following them. The bounds that keep this safe:

- only while the runner's tasks are quick (:class:`TaskDurations`, average
  under :data:`QUICK_TASK_SECONDS`; nothing is claimed ahead before a task
  has ended), so a waiting task usually waits about one task's time (an
  occasional long task among quick ones can hold it longer: the average
  bounds the cost, not each wait);
- a waiting task's lease is heartbeated on the process-wide tick, as a
  running task's is, so it does not expire while it waits and its store is
  reachable; one whose beat finds the lease gone is dropped unstarted (one
  started in between has its result fenced by the lease, like any task's);
- no waiting task starts while the runner is at its stray-thread cap;
- they are the runner's own: a graceful stop starts them as slots free and
  waits for them as for running tasks (they are quick: handing one back
  would only delay it); those still waiting when the grace period ends are
  handed back with the running ones, uncounted (they never started).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from cereal import errors
from cereal.drivers.base import TaskCompleter
from cereal.models import TaskData

logger = logging.getLogger(__name__)

QUICK_TASK_SECONDS = 0.02
"""Below this average task duration a runner claims tasks ahead of its free slots."""

Claimed = tuple[TaskData, TaskCompleter]
"""A claimed task and the completer that holds its lease."""


class TaskDurations:
    """A moving average of how long a runner's tasks take."""

    def __init__(self) -> None:
        self._average: float | None = None  # no task has ended yet

    def note(self, seconds: float) -> None:
        """One task ended after ``seconds``."""
        if self._average is None:
            self._average = seconds
        else:
            self._average += (seconds - self._average) * 0.2

    @property
    def quick(self) -> bool:
        """True when tasks have ended and average under :data:`QUICK_TASK_SECONDS`."""
        return self._average is not None and self._average < QUICK_TASK_SECONDS


class ClaimedAhead:
    """The claimed tasks waiting for a slot, oldest first, their leases kept alive.

    Args:
        heartbeat_interval: seconds between two heartbeats of a waiting task's
            lease (the runner's own interval, on the same process-wide tick).
        task_name: the runner's task name, for log records.
    """

    def __init__(self, heartbeat_interval: float, task_name: str) -> None:
        self._interval = heartbeat_interval
        self._name = task_name
        self._waiting: deque[Claimed] = deque()
        self._keeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, claimed: list[Claimed]) -> None:
        """Hold ``claimed`` until :meth:`pop` takes them (call on the loop's thread)."""
        self._waiting.extend(claimed)
        self._keep_beating()

    def pop(self) -> Claimed | None:
        """The oldest waiting task, or ``None`` when none waits."""
        if not self._waiting:
            return None
        claimed = self._waiting.popleft()
        self._keep_beating()  # the ones left go on being heartbeated
        return claimed

    def _keep_beating(self) -> None:
        """Start the keeper when tasks wait and none runs (the first, or one that died)."""
        if self._waiting and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.get_running_loop().create_task(
                self._keep_alive(), name=f"cereal-claimed-ahead-{self._name}"
            )

    def close(self) -> list[Claimed]:
        """Stop heartbeating; the tasks still waiting (to hand back), now taken out."""
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        waiting = list(self._waiting)
        self._waiting.clear()
        return waiting

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            # the same tick as running tasks' beats, so the driver joins them all
            await asyncio.sleep(self._interval - loop.time() % self._interval)
            waiting = list(self._waiting)
            beats = await asyncio.gather(
                *(completer.heartbeat() for _, completer in waiting), return_exceptions=True
            )
            pairs = zip(waiting, beats, strict=True)
            lost = {id(entry) for entry, beat in pairs if _lost(beat, self._name)}
            if lost:
                # its lease was settled (expired, or the run was killed): never start it
                self._waiting = deque(entry for entry in self._waiting if id(entry) not in lost)


def _lost(beat: BaseException | None, task_name: str) -> bool:
    """Whether a heartbeat's outcome says the lease is gone (other failures are logged).

    A failed beat keeps the task: the next tick tries again, and its lease
    lasts several intervals. The keeper never ends on one, or every waiting
    task would go unbeaten.
    """
    if isinstance(beat, errors.TaskLostError):
        logger.debug("a claimed %r task lost its lease while waiting; dropped", task_name)
        return True
    if isinstance(beat, errors.CerealError):
        logger.warning(
            "heartbeat of a claimed %r task waiting for a slot failed", task_name, exc_info=beat
        )
    elif isinstance(beat, Exception):
        logger.error(
            "heartbeat of a claimed %r task waiting for a slot raised", task_name, exc_info=beat
        )
    return False
