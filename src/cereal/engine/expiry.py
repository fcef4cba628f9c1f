"""What a sweep does with a task whose lease expired, the same over every store.

Each expired lease is decided on its own (:func:`decide_expiry`), and the
decision never raises: a stored retry policy that cannot be read, or is out
of bounds, means no retry. The task is reported ``LOST`` with the reason as
its result's error text (shown in the instance's event history) and a
WARNING names it, so one bad row never stops the sweep of the others.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from cereal.models import ExpiredLease, LeaseSettlement
from cereal.retry import load_policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpiryDecision:
    """What to do with one expired lease."""

    delay: float | None = None
    """Seconds until the next attempt; ``None``: report the task ``LOST``."""
    error: str = ""
    """The LOST result's error text: why the stored retry policy was refused (else empty)."""
    poison: bool = False
    """The task used the last of several attempts (each one lost its worker)."""

    def settlement(self, lease: ExpiredLease) -> LeaseSettlement:
        """This decision as the store applies it to ``lease``."""
        return LeaseSettlement(lease.task_id, lease.lease, self.delay, self.error)


def decide_expiry(lease: ExpiredLease) -> ExpiryDecision:
    """Retry after the backoff of the task's stored policy, else LOST; never raises.

    A refused policy gives a LOST decision with the reason as its ``error``;
    once that is applied, :func:`warn_refused_policy` names the task.
    """
    try:
        policy = load_policy(lease.retry_policy)
    except ValueError as exc:
        return ExpiryDecision(error=str(exc))
    if policy.retries(None, lease.attempt):
        return ExpiryDecision(delay=policy.backoff(lease.attempt, random.uniform(-1.0, 1.0)))
    return ExpiryDecision(poison=policy.max_attempts > 1)


def invalid_policy_note(lease: ExpiredLease) -> str:
    """How a sweep report names a task whose stored retry policy was refused."""
    return f"{lease.task_name} (id {lease.task_id}) of {lease.workflow_name}/{lease.instance_name}"


def warn_refused_policy(lease: ExpiredLease, decision: ExpiryDecision) -> None:
    """Log a WARNING naming the task when ``decision`` made it LOST for a refused policy.

    Called once the decision was applied, so a lease that another sweep
    settled first is not reported twice.
    """
    if decision.delay is not None or not decision.error:
        return
    logger.warning(
        "task %r (id %s) of workflow %r instance %r is reported LOST: %s",
        lease.task_name,
        lease.task_id,
        lease.workflow_name,
        lease.instance_name,
        decision.error,
        extra={"event": "invalid_retry_policy", "task_id": lease.task_id},
    )
