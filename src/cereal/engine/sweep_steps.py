"""A sweep's steps run independently: one that fails is logged, and the others still run.

Expiring leases, releasing stale claims and trimming history do not depend on
each other, so an error in one (a damaged row, a statement the store
refuses, a store that cannot be reached) must not leave the others undone
until someone repairs it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


class SweepSteps:
    """Runs the steps of one sweep, keeping a note for each that failed."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        """One note per failed step (``"<step> failed: <error>"``), for ``SweepReport.notes``."""

    async def run(self, name: str, step: Callable[[], Awaitable[T]], empty: T) -> T:
        """Await ``step()``; on an error log it, note it and return ``empty``."""
        try:
            return await step()
        except Exception as exc:
            self._failed(name, exc)
            return empty

    def _failed(self, name: str, exc: Exception) -> None:
        logger.error(
            "sweep step %r failed; the other steps still run",
            name,
            exc_info=exc,
            extra={"event": "sweep_step_failed", "step": name},
        )
        self.failures.append(f"{name} failed: {exc}")
