"""The server's domains: each one's driver, scheduler, sweeper and wakeup watchers.

A domain is opened on its first call (or at start when its store already
exists) and stays open until the server stops. Its scheduler and expiry sweep
run here, in the server, so schedules fire and lost tasks are reported even
when no client Manager runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from cereal.drivers.base import DEFAULT_TASK_EXPIRY, Driver, WorkKind
from cereal.engine.scheduler import WorkflowScheduler
from cereal.engine.sweeper import run_sweeper
from cereal.models import HistoryRetention
from cereal.server.stores import DomainStores
from cereal.wire.domain_names import check_domain

logger = logging.getLogger(__name__)

WATCH_QUEUE_SIZE = 1024
"""Wakeups buffered per watcher; a watcher that falls this far behind gets one catch-all."""

Wakeup = tuple[WorkKind, str | None]

_SCHEDULER_MAX_WAKEUP = 60.0
_LATE_WARNING = 10.0


class HostedDomain:
    """One domain's open driver and the loops the server runs for it."""

    def __init__(self, name: str, driver: Driver) -> None:
        self.name = name
        self.driver = driver
        self._loop = asyncio.get_running_loop()
        self._watchers: set[asyncio.Queue[Wakeup]] = set()
        self._scheduler = WorkflowScheduler(
            driver,
            on_enqueued=lambda: None,  # the driver's own wakeup reaches the watchers
            max_wakeup_interval=_SCHEDULER_MAX_WAKEUP,
            late_warning_threshold=_LATE_WARNING,
        )
        self._loops: list[asyncio.Task[None]] = []

    async def start(self, sweep_expiry: float, *, maintenance: bool = True) -> None:
        """Open the store, then (with ``maintenance``) start the scheduler and the sweeper."""
        self.driver.add_wakeup_listener(self._on_wakeup)
        await self.driver.init()
        if not maintenance:
            return
        self._loops = [
            asyncio.create_task(self._scheduler.run(), name=f"cereal-scheduler-{self.name}"),
            asyncio.create_task(
                run_sweeper(self.driver, task_expiry=sweep_expiry),
                name=f"cereal-sweeper-{self.name}",
            ),
        ]

    async def stop(self) -> None:
        """Stop the loops and close the store."""
        self._scheduler.stop()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.driver.remove_wakeup_listener(self._on_wakeup)
        await self.driver.close()

    def _on_wakeup(self, kind: WorkKind, name: str | None) -> None:
        # drivers may call from any thread
        if kind == "schedule":
            self._scheduler.trigger()
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is gone
            self._loop.call_soon_threadsafe(self._fan_out, kind, name)

    def _fan_out(self, kind: WorkKind, name: str | None) -> None:
        for queue in self._watchers:
            offer(queue, kind, name)

    @contextlib.contextmanager
    def watch(self) -> Iterator[asyncio.Queue[Wakeup]]:
        """A queue receiving this domain's wakeups while the block runs."""
        queue: asyncio.Queue[Wakeup] = asyncio.Queue(WATCH_QUEUE_SIZE)
        self._watchers.add(queue)
        try:
            yield queue
        finally:
            self._watchers.discard(queue)


class DomainRegistry:
    """Opens each domain once, on demand, and closes them all at the end."""

    def __init__(
        self,
        stores: DomainStores,
        *,
        sweep_expiry: float = DEFAULT_TASK_EXPIRY,
        maintenance: bool = True,
        retention: HistoryRetention | None = None,
    ) -> None:
        self._stores = stores
        self._sweep_expiry = sweep_expiry
        self._maintenance = maintenance
        self._retention = retention
        self._domains: dict[str, HostedDomain] = {}
        self._opening: dict[str, asyncio.Task[HostedDomain]] = {}
        self._closed = False

    async def get(self, name: str) -> HostedDomain:
        """The open domain ``name``, opened now if needed.

        Raises:
            ValueError: the name is malformed.
            RuntimeError: the registry is closed.
            CerealError: the store failed to open.
        """
        check_domain(name)
        found = self._domains.get(name)
        if found is not None:
            return found
        if self._closed:
            raise RuntimeError("the server is stopping")
        opening = self._opening.get(name)
        if opening is None:
            opening = asyncio.create_task(self._open(name))
            self._opening[name] = opening
        return await asyncio.shield(opening)

    async def _open(self, name: str) -> HostedDomain:
        try:
            driver = await self._stores.build(name)
            if self._retention is not None:
                driver.retention = self._retention
            domain = HostedDomain(name, driver)
            await domain.start(self._sweep_expiry, maintenance=self._maintenance)
            self._domains[name] = domain
            logger.info("domain %r opened", name)
            return domain
        finally:
            del self._opening[name]

    async def open_existing(self) -> list[str]:
        """Open every domain whose store exists (so its schedules run); returns their names."""
        names = await self._stores.existing()
        for name in names:
            await self.get(name)
        return names

    async def close(self) -> None:
        """Close every domain; later calls are refused."""
        self._closed = True
        for opening in list(self._opening.values()):
            with contextlib.suppress(Exception):
                await opening
        domains, self._domains = list(self._domains.values()), {}
        for domain in domains:
            try:
                await domain.stop()
            except Exception:
                logger.exception("closing domain %r failed", domain.name)


def offer(queue: asyncio.Queue[Wakeup], kind: WorkKind, name: str | None) -> None:
    """Put a wakeup on a watcher's queue without blocking.

    A full queue is a slow watcher: its oldest entry is dropped and the
    wakeup goes in without its name, one "any work of this kind" hint.
    """
    try:
        queue.put_nowait((kind, name))
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait((kind, None))
