"""One maintenance sweep of a store: expire lost task leases, release stale claims, trim history.

The store answers small questions and applies what it is told
(:class:`~cereal.drivers.base.MaintenanceStore`); the decisions are made
here, once for every driver. Expired leases are read in batches of
:data:`SWEEP_BATCH`; each lease is decided on its own (retry after its
stored policy's backoff, else ``LOST``, see :mod:`cereal.engine.expiry`)
and the batch's decisions are settled in one transaction that applies each
only while its lease is still the task's and still expired. The three steps
run independently (:class:`~cereal.engine.sweep_steps.SweepSteps`): one
that fails is logged at ERROR and noted in the report, the others run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cereal.drivers.base import MaintenanceStore
from cereal.engine.expiry import (
    ExpiryDecision,
    decide_expiry,
    invalid_policy_note,
    warn_refused_policy,
)
from cereal.engine.sweep_steps import SweepSteps
from cereal.models import ExpiredLease, SweepReport
from cereal.retry import given_up_note

SWEEP_BATCH = 500
"""Expired leases read and settled per round (keeps each transaction short)."""

TRIM_SKIPPED_NOTE = "history not trimmed: another process is on it"
"""The report's note when another process held the store's trimming turn."""


@dataclass
class ExpiredOutcome:
    """What settling expired leases applied so far (kept when a later batch fails)."""

    lost: int = 0
    retried: list[tuple[str, str]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    def add(self, lease: ExpiredLease, decision: ExpiryDecision) -> None:
        """Count one applied decision."""
        if decision.delay is not None:
            self.retried.append((lease.workflow_name, lease.task_name))
            return
        self.lost += 1
        if decision.poison:
            self.given_up.append(given_up_note(lease.task_name, lease.task_id, lease.attempt))
        if decision.error:
            self.invalid.append(invalid_policy_note(lease))


async def sweep_store(
    store: MaintenanceStore, task_expiry: float, *, batch: int = SWEEP_BATCH
) -> SweepReport:
    """Run one sweep of ``store``; safe to run from many processes at once.

    ``task_expiry`` (the sweeper's) judges workflow claims, and task leases
    only when they have no stored expiry; history is trimmed per
    ``store.retention``.
    """
    steps = SweepSteps()
    expired = ExpiredOutcome()
    await steps.run(
        "expire leases", lambda: settle_expired(store, task_expiry, expired, batch=batch), None
    )
    released = await steps.run(
        "release stale claims", lambda: store.release_stale_claims(task_expiry), 0
    )
    none_trimmed: int | None = 0
    trimmed = await steps.run(
        "trim history", lambda: store.trim_history(store.retention), none_trimmed
    )
    notes = [*steps.failures]
    if trimmed is None:
        notes.append(TRIM_SKIPPED_NOTE)
    return SweepReport(
        expired_tasks=expired.lost,
        released_claims=released,
        trimmed_results=trimmed or 0,
        notes=tuple(notes),
        retried_tasks=len(expired.retried),
        retried=tuple(expired.retried),
        given_up=tuple(expired.given_up),
        invalid_policies=tuple(expired.invalid),
    )


async def settle_expired(
    store: MaintenanceStore, task_expiry: float, outcome: ExpiredOutcome, *, batch: int
) -> None:
    """Decide and settle expired leases, ``batch`` at a time, into ``outcome``.

    Stops after a short batch, or one that settled nothing (its leases are
    held by others right now: the next sweep retries them), so a sweep ends
    even while other processes keep the same leases locked.
    """
    while True:
        leases = await store.expired_task_leases(task_expiry, batch)
        if not leases:
            return
        decided = [(lease, decide_expiry(lease)) for lease in leases]
        applied = set(
            await store.settle_expired_leases(
                [decision.settlement(lease) for lease, decision in decided],
                task_expiry=task_expiry,
            )
        )
        for lease, decision in decided:
            if lease.task_id in applied:
                warn_refused_policy(lease, decision)
                outcome.add(lease, decision)
        if len(leases) < batch or not applied:
            return
