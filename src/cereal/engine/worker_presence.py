"""This Manager's row in the store's list of live workers.

A started Manager registers itself (id, host, pid, the names it runs, the
cereal version), refreshes its row every heartbeat and removes it at stop.
A Manager that dies without stopping stops refreshing; once its
``task_expiry`` has passed, its row is dead and the driver drops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from importlib import metadata

from cereal import errors
from cereal.drivers.base import Driver
from cereal.models import NewWorker

logger = logging.getLogger(__name__)

DISTRIBUTION = "cereal-workflows"
"""The name cereal is installed under (its version is shown for each worker)."""


def cereal_version() -> str:
    """The installed cereal's version, or ``"unknown"`` when run from a bare source tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def describe_this_process(
    workflow_names: Iterable[str], task_names: Iterable[str], *, expiry: float
) -> NewWorker:
    """The registration of a Manager in this process, under a fresh id."""
    return NewWorker(
        id=uuid.uuid4().hex,
        host=socket.gethostname(),
        pid=os.getpid(),
        workflow_names=tuple(sorted(workflow_names)),
        task_names=tuple(sorted(task_names)),
        version=cereal_version(),
        expiry=expiry,
    )


class WorkerPresence:
    """Keeps one Manager's worker row alive while it runs.

    Storage failures are logged and retried at the next heartbeat: being
    listed is informational and never stops a Manager from working.
    """

    def __init__(self, driver: Driver, worker: NewWorker, *, interval: float) -> None:
        self._driver = driver
        self._worker = worker
        self._interval = interval

    @property
    def worker_id(self) -> str:
        """The id this Manager is listed under."""
        return self._worker.id

    async def register(self) -> bool:
        """Write this Manager's row; False (logged) when storage failed."""
        try:
            await self._driver.register_worker(self._worker)
        except errors.CerealError:
            logger.warning("registering this worker failed; retrying", exc_info=True)
            return False
        return True

    async def run(self, *, registered: bool) -> None:
        """Refresh the row every interval until cancelled (registering again if it is gone).

        ``registered`` says whether :meth:`register` succeeded already.
        """
        while True:
            await asyncio.sleep(self._interval)
            try:
                if registered:
                    registered = await self._driver.refresh_worker(self._worker.id)
                    if registered:
                        continue
                    logger.warning(
                        "this worker's row was dropped (no refresh within %g s); registering again",
                        self._worker.expiry,
                    )
                registered = await self.register()
            except errors.CerealError:
                logger.warning("refreshing this worker's row failed", exc_info=True)

    async def unregister(self) -> None:
        """Remove the row (at stop); a failure is logged, the row then expires by itself."""
        try:
            await self._driver.unregister_worker(self._worker.id)
        except errors.CerealError:
            logger.warning(
                "removing this worker's row failed; it drops out after %g s",
                self._worker.expiry,
                exc_info=True,
            )
