"""Task retries: :class:`RetryPolicy`, and the stored form every worker applies.

A policy is stored with its task as JSON (:meth:`RetryPolicy.to_json`), so a
retry runs under the policy the task was enqueued (or first claimed) with, on
any worker. Exception types in ``non_retryable`` are stored as qualified
names (``module.QualName``) and matched against the qualified names of a
raised exception's class and its bases, so a worker need not import them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from cereal import _time

DEFAULT_MAX_HAND_BACKS = 3
"""Hand-backs of one task at stop before it is reported ``LOST``."""


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, as ``non_retryable`` names are stored."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed task is tried again.

    A failed attempt (the executor raised, timed out, or its lease expired
    because its worker died) with attempts left is queued again after a
    backoff of ``initial_backoff * multiplier ** (attempt - 1)`` seconds,
    capped at ``max_backoff`` and spread by ``+/- jitter`` of itself (the cap
    holds after the jitter too). The workflow sees only the final outcome.
    An exception whose class is, or derives from, one of ``non_retryable``
    fails the task at once. ``max_attempts=1`` (the default) never retries.

    Raises:
        TypeError / ValueError: a field of the wrong type or out of range.
    """

    max_attempts: int = 1
    initial_backoff: float | timedelta = 1.0
    max_backoff: float | timedelta = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool):
            raise TypeError(f"max_attempts must be an int, got {type(self.max_attempts).__name__}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        initial = _time.seconds(self.initial_backoff, name="initial_backoff")
        cap = _time.seconds(self.max_backoff, name="max_backoff")
        if cap < initial:
            raise ValueError(
                f"max_backoff ({cap:g} s) must not be below initial_backoff ({initial:g} s)"
            )
        multiplier = _finite(self.multiplier, "multiplier")
        if multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier!r}")
        jitter = _finite(self.jitter, "jitter")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        kinds = self.non_retryable
        if not isinstance(kinds, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in kinds
        ):
            raise TypeError("non_retryable must be a tuple of exception classes")
        # normalise durations to seconds so equal policies compare (and store) equal
        object.__setattr__(self, "initial_backoff", initial)
        object.__setattr__(self, "max_backoff", cap)
        object.__setattr__(self, "multiplier", multiplier)
        object.__setattr__(self, "jitter", jitter)

    def to_json(self) -> str:
        """The stored form: JSON with ``non_retryable`` as qualified class names."""
        return json.dumps(
            {
                "max_attempts": self.max_attempts,
                "initial_backoff": self.initial_backoff,
                "max_backoff": self.max_backoff,
                "multiplier": self.multiplier,
                "jitter": self.jitter,
                "non_retryable": sorted({qualified_name(k) for k in self.non_retryable}),
            },
            separators=(",", ":"),
            sort_keys=True,
        )


def _finite(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StoredRetryPolicy:
    """A policy as read back from storage: exception types are names here."""

    max_attempts: int = 1
    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1
    non_retryable: frozenset[str] = frozenset()

    def base_backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), before jitter."""
        exponent = max(attempt - 1, 0)
        try:
            grown = self.initial_backoff * self.multiplier**exponent
        except OverflowError:
            grown = math.inf
        return min(self.max_backoff, grown)

    def backoff(self, attempt: int, spread: float) -> float:
        """The delay after ``attempt`` with jitter; ``spread`` is uniform in [-1, 1]."""
        base = self.base_backoff(attempt)
        return min(self.max_backoff, max(0.0, base * (1 + self.jitter * spread)))

    def least_backoff(self, attempt: int) -> float:
        """The shortest delay :meth:`backoff` can give after ``attempt``."""
        return self.base_backoff(attempt) * (1 - self.jitter)

    def retries(self, failure: BaseException | None, attempt: int) -> bool:
        """Whether a failed ``attempt`` (``failure``: what the executor raised) is tried again."""
        if attempt >= self.max_attempts:
            return False
        if failure is None or not self.non_retryable:
            return True
        return not any(qualified_name(cls) in self.non_retryable for cls in type(failure).__mro__)


NO_RETRY = StoredRetryPolicy()
"""The policy of a task stored without one: a single attempt."""


@lru_cache(maxsize=256)
def load_policy(stored: str | None) -> StoredRetryPolicy:
    """The policy stored with a task (``None``: a single attempt).

    Raises:
        ValueError: the stored text is not a policy (a damaged row).
    """
    if stored is None:
        return NO_RETRY
    try:
        fields: dict[str, Any] = json.loads(stored)
        return StoredRetryPolicy(
            max_attempts=int(fields["max_attempts"]),
            initial_backoff=float(fields["initial_backoff"]),
            max_backoff=float(fields["max_backoff"]),
            multiplier=float(fields["multiplier"]),
            jitter=float(fields["jitter"]),
            non_retryable=frozenset(str(name) for name in fields.get("non_retryable", ())),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"stored retry policy is damaged: {stored!r}") from exc


def load_policy_or_none(stored: str | None) -> StoredRetryPolicy:
    """As :func:`load_policy`, but a damaged policy counts as a single attempt (for sweeps)."""
    try:
        return load_policy(stored)
    except ValueError:
        return NO_RETRY


def given_up_note(task_name: str, task_id: object, attempts: int) -> str:
    """How a sweep names a task given up after its last attempt's lease expired."""
    return f"{task_name} (id {task_id}) after {attempts} attempts"


def check_policy(retry: object, *, name: str = "retry") -> RetryPolicy | None:
    """Return ``retry`` if it is a :class:`RetryPolicy` or ``None``.

    Raises:
        TypeError: anything else.
    """
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"{name} must be a cereal.RetryPolicy or None, got {type(retry).__name__}")
    return retry
