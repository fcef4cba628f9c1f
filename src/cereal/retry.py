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

DEFAULT_MAX_HAND_BACKS = 3
"""Hand-backs of one task at stop before it is reported ``LOST``."""

MAX_ATTEMPTS = 1_000_000
"""The most attempts a policy may allow (the stores count attempts in 32-bit integers)."""

MAX_BACKOFF = 366 * 24 * 3600.0
"""The longest backoff, in seconds (366 days): ``now`` plus it fits every store's time type."""


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

    Bounds every store can hold: ``max_attempts`` an int from 1 to
    :data:`MAX_ATTEMPTS`, backoffs from 0 to :data:`MAX_BACKOFF` (366 days),
    ``multiplier`` finite and at least 1, ``jitter`` in [0, 1).

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
        _check_kinds(self.non_retryable)
        initial, cap, multiplier, jitter = _check_numbers(
            self.max_attempts, self.initial_backoff, self.max_backoff, self.multiplier, self.jitter
        )
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


def _check_numbers(
    max_attempts: object,
    initial_backoff: object,
    max_backoff: object,
    multiplier: object,
    jitter: object,
) -> tuple[float, float, float, float]:
    """Check a policy's numbers against the bounds every store can hold.

    The one check for both forms (a :class:`RetryPolicy` and its stored JSON).

    Returns:
        ``initial_backoff``, ``max_backoff`` (seconds), ``multiplier``, ``jitter`` as floats.

    Raises:
        TypeError / ValueError: naming the field and the bound.
    """
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool):
        raise TypeError(f"max_attempts must be an int, got {type(max_attempts).__name__}")
    if not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise ValueError(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS}, got {_short(max_attempts)}"
        )
    initial = _backoff_seconds(initial_backoff, "initial_backoff")
    cap = _backoff_seconds(max_backoff, "max_backoff")
    if cap < initial:
        raise ValueError(
            f"max_backoff ({cap:g} s) must not be below initial_backoff ({initial:g} s)"
        )
    factor = _finite(multiplier, "multiplier")
    if factor < 1:
        raise ValueError(f"multiplier must be at least 1, got {_short(multiplier)}")
    spread = _finite(jitter, "jitter")
    if not 0 <= spread < 1:
        raise ValueError(f"jitter must be in [0, 1), got {_short(jitter)}")
    return initial, cap, factor, spread


def _check_kinds(kinds: object) -> None:
    if not isinstance(kinds, tuple) or not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in kinds
    ):
        raise TypeError("non_retryable must be a tuple of exception classes")


def _backoff_seconds(value: object, name: str) -> float:
    """A backoff in seconds: a number or a timedelta, finite, within ``[0, MAX_BACKOFF]``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not (isinstance(value, int) or math.isfinite(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if value < 0 or value > MAX_BACKOFF:  # compared before float(): a huge int overflows
            raise ValueError(
                f"{name} must be between 0 and {MAX_BACKOFF:.0f} s (366 days), got {_short(value)}"
            )
        return float(value)
    else:
        raise TypeError(
            f"{name} must be seconds (int/float) or a timedelta, got {type(value).__name__}"
        )
    if not 0 <= seconds <= MAX_BACKOFF:
        raise ValueError(
            f"{name} must be between 0 and {MAX_BACKOFF:.0f} s (366 days), got {_short(value)}"
        )
    return seconds


def _finite(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError(f"{name} must be finite, got {_short(value)}") from None
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (a stored number can be very long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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
        if self.initial_backoff == 0:
            return 0.0
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
    """The policy stored with a task (``None``: a single attempt), checked as at construction.

    The same bounds as :class:`RetryPolicy` hold, so a row stored by other
    means (SQL, an older version, a gRPC client) cannot make a retry's time
    overflow a store. Keys other than a policy's are ignored.

    Raises:
        ValueError: the stored text is not a valid policy; the text starts
            ``invalid retry policy:`` and names the field.
    """
    if stored is None:
        return NO_RETRY
    try:
        fields = json.loads(stored)
        if not isinstance(fields, dict):
            raise TypeError(f"a JSON object is needed, got {type(fields).__name__}")
        missing = [key for key in _STORED_KEYS if key not in fields]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
        numbers = [fields[key] for key in _STORED_KEYS]
        initial, cap, multiplier, jitter = _check_numbers(*numbers)
        names = fields.get("non_retryable", [])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise TypeError("non_retryable must be a list of class names")
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"invalid retry policy: {reason} (stored: {_short(stored, 200)})") from exc
    return StoredRetryPolicy(
        max_attempts=fields["max_attempts"],
        initial_backoff=initial,
        max_backoff=cap,
        multiplier=multiplier,
        jitter=jitter,
        non_retryable=frozenset(names),
    )


_STORED_KEYS = ("max_attempts", "initial_backoff", "max_backoff", "multiplier", "jitter")


def check_stored_policy(stored: object, *, name: str = "retry_policy") -> str | None:
    """Return ``stored`` if it is ``None`` or a valid stored policy (:meth:`RetryPolicy.to_json`).

    For policies that arrive in their stored form (a gRPC request), checked
    as :func:`load_policy` reads them back.

    Raises:
        TypeError: not a string.
        ValueError: not a valid policy (the text names the field and the bound).
    """
    if stored is None:
        return None
    if not isinstance(stored, str):
        raise TypeError(f"{name} must be a JSON string or None, got {type(stored).__name__}")
    load_policy(stored)
    return stored


def load_policy_or_none(stored: str | None) -> StoredRetryPolicy:
    """As :func:`load_policy`, but an invalid policy counts as a single attempt (for sweeps)."""
    try:
        return load_policy(stored)
    except ValueError:
        return NO_RETRY


def given_up_note(task_name: str, task_id: object, attempts: int) -> str:
    """How a sweep names a task given up after its last attempt's lease expired."""
    return f"{task_name} (id {task_id}) after {attempts} attempts"


def check_policy(retry: object, *, name: str = "retry") -> RetryPolicy | None:
    """Return ``retry`` if it is a valid :class:`RetryPolicy` or ``None``.

    Its fields are checked again (a frozen dataclass can still be altered
    with ``object.__setattr__``), and so is its stored form, so nothing out
    of bounds is ever stored.

    Raises:
        TypeError: not a policy, or a field of the wrong type.
        ValueError: a field out of range.
    """
    if retry is None:
        return None
    if not isinstance(retry, RetryPolicy):
        raise TypeError(f"{name} must be a cereal.RetryPolicy or None, got {type(retry).__name__}")
    _check_kinds(retry.non_retryable)
    _check_numbers(
        retry.max_attempts, retry.initial_backoff, retry.max_backoff, retry.multiplier, retry.jitter
    )
    load_policy(retry.to_json())
    return retry
