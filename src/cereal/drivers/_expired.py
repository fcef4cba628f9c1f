"""What a sweep does with a task whose lease expired, the same on every driver.

Each expired lease is decided on its own (:func:`decide_expiry`), and the
decision never raises: a stored retry policy that cannot be read, or is out
of bounds, means no retry. The task is reported ``LOST`` with the reason as
its result's error text (shown in the instance's event history) and a
WARNING names it, so one bad row never stops the sweep of the others.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from cereal.retry import load_policy

logger = logging.getLogger(__name__)


@dataclass
class ExpiredTasks:
    """What one expiry pass did: the workflows of LOST tasks, retried tasks, poison notes.

    ``retried`` holds the (workflow name, task name) of each task queued again;
    ``invalid`` a note for each task reported LOST because its stored retry
    policy was refused.
    """

    lost: list[str] = field(default_factory=list)
    retried: list[tuple[str, str]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExpiryDecision:
    """What to do with one expired lease."""

    delay: float | None = None
    """Seconds until the next attempt; ``None``: report the task ``LOST``."""
    error: str = ""
    """The LOST result's error text: why the stored retry policy was refused (else empty)."""
    poison: bool = False
    """The task used the last of several attempts (each one lost its worker)."""


@dataclass(frozen=True)
class ExpiredLease:
    """The expired task a decision is about (for the WARNING that names a refused policy)."""

    task_id: object
    task_name: str
    workflow_name: str
    instance_name: str


def decide_expiry(lease: ExpiredLease, retry_policy: str | None, attempt: int) -> ExpiryDecision:
    """Retry after the backoff of the task's stored policy, else LOST; never raises."""
    try:
        policy = load_policy(retry_policy)
    except ValueError as exc:
        logger.warning(
            "task %r (id %s) of workflow %r instance %r is reported LOST: %s",
            lease.task_name,
            lease.task_id,
            lease.workflow_name,
            lease.instance_name,
            exc,
            extra={"event": "invalid_retry_policy", "task_id": str(lease.task_id)},
        )
        return ExpiryDecision(error=str(exc))
    if policy.retries(None, attempt):
        return ExpiryDecision(delay=policy.backoff(attempt, random.uniform(-1.0, 1.0)))
    return ExpiryDecision(poison=policy.max_attempts > 1)


def invalid_policy_note(lease: ExpiredLease) -> str:
    """How a sweep report names a task whose stored retry policy was refused."""
    return f"{lease.task_name} (id {lease.task_id}) of {lease.workflow_name}/{lease.instance_name}"
