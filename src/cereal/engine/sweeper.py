"""Periodic maintenance: expire lost task leases, release stale claims, trim history.

Every Manager runs one (and ``cereal serve`` one per domain); the store
makes concurrent sweeps safe (each decision is applied only while its lease
is still expired), so a crashed process's tasks are reported ``LOST`` (or,
with attempts left under their retry policy, queued again) by whichever
Manager sweeps first. A sweep (:func:`cereal.engine.sweep.sweep_store`)
runs its steps independently and decides each expired lease on its own,
logging what failed; a sweep that fails as a whole is logged and the next
one runs.
"""

from __future__ import annotations

import asyncio
import logging
import random

from cereal import errors
from cereal.drivers.base import MaintenanceStore
from cereal.engine.sweep import sweep_store
from cereal.observe import Observer, note_task_retried

logger = logging.getLogger(__name__)


def sweep_interval(task_expiry: float) -> float:
    """How often to sweep: a quarter of the expiry (so LOST arrives soon after it), 50 ms-15 s."""
    return max(0.05, min(task_expiry / 4, 15.0))


async def run_sweeper(
    store: MaintenanceStore, *, task_expiry: float, observer: Observer | None = None
) -> None:
    """Sweep every :func:`sweep_interval` (with jitter) until cancelled.

    ``task_expiry`` (this Manager's) sets the pace and judges workflow claims;
    task leases are judged by the expiry stored with each of them. Each
    expired lease queued again under its retry policy is reported to
    ``observer`` as a retry.
    """
    interval = sweep_interval(task_expiry)
    while True:
        await asyncio.sleep(interval * (0.75 + random.random() / 2))
        try:
            report = await sweep_store(store, task_expiry)
        except errors.CerealError:
            logger.warning("maintenance sweep failed", exc_info=True)
            continue
        except Exception:
            # a bug, or a row nothing handles: the next sweep still runs
            logger.error("maintenance sweep failed unexpectedly", exc_info=True)
            continue
        if report.expired_tasks:
            # each lease is judged by its holder's expiry, which may differ from ours
            logger.warning(
                "%d task(s) lost (no heartbeat within their holder's task_expiry)",
                report.expired_tasks,
                extra={"event": "tasks_lost", "count": report.expired_tasks},
            )
        for workflow_name, task_name in report.retried:
            note_task_retried(observer, workflow_name, task_name)
        if report.retried_tasks:
            logger.info(
                "%d task(s) with an expired lease queued again under their retry policy",
                report.retried_tasks,
                extra={"event": "tasks_retried", "count": report.retried_tasks},
            )
        if report.given_up:
            # each of these killed (or outlived) its worker on every attempt
            logger.warning(
                "giving up %d poison task(s) as LOST, their lease expired on every attempt: %s",
                len(report.given_up),
                ", ".join(report.given_up),
                extra={"event": "poison_tasks", "count": len(report.given_up)},
            )
        if report.released_claims:
            logger.warning("%d stale workflow claim(s) released", report.released_claims)
