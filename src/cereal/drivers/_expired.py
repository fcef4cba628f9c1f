"""What a sweep does with a task whose lease expired, the same on every driver."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cereal.retry import load_policy_or_none


@dataclass
class ExpiredTasks:
    """What one expiry pass did: the workflows of LOST tasks, retried tasks, poison notes.

    ``retried`` holds the (workflow name, task name) of each task queued again.
    """

    lost: list[str] = field(default_factory=list)
    retried: list[tuple[str, str]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


def expiry_retry_delay(retry_policy: str | None, attempt: int) -> float | None:
    """Seconds until the next attempt of a task whose lease expired; ``None``: report it LOST."""
    policy = load_policy_or_none(retry_policy)
    if not policy.retries(None, attempt):
        return None
    return policy.backoff(attempt, random.uniform(-1.0, 1.0))


def is_poison(retry_policy: str | None) -> bool:
    """Whether a task given up at expiry had several attempts (each one lost its worker)."""
    return load_policy_or_none(retry_policy).max_attempts > 1
