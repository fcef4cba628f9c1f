"""The input checks every way into the engine applies, in one place.

The Manager applies them to what users pass before it calls a driver, and
``cereal serve`` applies the same functions to every request before it
stores anything (a gRPC client need not be a Manager). Each check raises
``ValueError`` or ``TypeError`` (``InvalidScheduleError`` for a rule with no
future occurrence) with a message naming the field; the rules themselves live
in :mod:`cereal.checks.names`, :mod:`cereal.values`, :mod:`cereal.recurrence`,
:mod:`cereal.retry` and :mod:`cereal.checks.times`.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from cereal import errors, values
from cereal import recurrence as _recurrence
from cereal.checks import names as name_checks
from cereal.checks import times
from cereal.models import NewTask
from cereal.priority import check_priority
from cereal.rate_limit import MAX_RATE_STARTS, period_seconds
from cereal.retry import load_policy

logger = logging.getLogger(__name__)


def check_pair(workflow_name: object, instance_name: object) -> None:
    """Refuse a bad workflow or instance name (see :func:`cereal.checks.names.check_name`)."""
    name_checks.check_name(workflow_name, what="workflow name")
    name_checks.check_name(instance_name, what="instance name")


def positive_int(value: object, name: str) -> int:
    """``value`` if it is an int of at least 1.

    Raises:
        TypeError: not an int (a bool is not one).
        ValueError: below 1.
    """
    return _int_at_least(value, name, 1)


def non_negative_int(value: object, name: str) -> int:
    """``value`` if it is an int of at least 0.

    Raises:
        TypeError: not an int (a bool is not one).
        ValueError: below 0.
    """
    return _int_at_least(value, name, 0)


def _int_at_least(value: object, name: str, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}")
    return value


MAX_EXPIRY = 366 * 24 * 3600.0
"""The longest lease or claim expiry, in seconds (366 days: ``now + expiry`` fits every store)."""


def expiry_seconds(value: object, name: str) -> float:
    """A lease, claim or worker expiry: a duration above 0 and at most :data:`MAX_EXPIRY`.

    Raises:
        TypeError: not a number of seconds or a ``timedelta``.
        ValueError: not finite, not above 0, or over :data:`MAX_EXPIRY`.
    """
    result = times.seconds(value, name=name)  # type: ignore[arg-type]
    if not 0 < result <= MAX_EXPIRY:
        raise ValueError(f"{name} must be above 0 and at most {MAX_EXPIRY:.0f} s, got {value!r}")
    return result


def sweep_expiry_seconds(value: object, name: str) -> float:
    """A sweep's expiry: like :func:`expiry_seconds`, but 0 (every lease judged stale) is allowed.

    Raises:
        TypeError: not a number of seconds or a ``timedelta``.
        ValueError: negative, not finite, or over :data:`MAX_EXPIRY`.
    """
    result = times.seconds(value, name=name)  # type: ignore[arg-type]
    if result > MAX_EXPIRY:
        raise ValueError(f"{name} must be at most {MAX_EXPIRY:.0f} s, got {value!r}")
    return result


def normalize_recurrence(rule: Any) -> str:
    """The stored text of a schedule's rule (RRULE, cron or dateutil ``rrule``).

    Raises:
        TypeError: no rule, or not a str or rrule.
        InvalidScheduleError: it does not parse; the message names the problem.
    """
    if rule is None:
        raise TypeError("recurrence is required: an RRULE string or a dateutil rrule")
    return _recurrence.normalize(rule)


async def first_due(rule: str) -> datetime:
    """The first occurrence of a normalised rule from now.

    Raises:
        InvalidScheduleError: the rule has no future occurrence.
    """
    due = await _recurrence.next_after_off_loop(rule, times.utcnow())
    if due is None:
        raise errors.InvalidScheduleError(
            f"workflow schedule is not valid: recurrence {rule!r} has no future occurrence"
        )
    return due


def check_encoded_value(raw: bytes | None, *, where: str, max_bytes: int) -> bytes | None:
    """Refuse already-encoded bytes that :func:`cereal.values.encode` would not have made.

    ``None`` (no value) passes. Otherwise the bytes must be at most
    ``max_bytes`` long and be UTF-8 JSON that ``encode`` accepts (no NaN or
    infinities, no lone surrogates), so what a remote client stores is what a
    Manager could have stored.

    Raises:
        ValueError: over ``max_bytes`` (checked before the value is parsed).
        TypeError: not UTF-8 JSON, or JSON that ``encode`` refuses.
    """
    if raw is None:
        return None
    values.check_size(raw, where=where, max_bytes=max_bytes)
    try:
        decoded = json.loads(raw.decode("utf-8"))  # UTF-8 only: json.loads(bytes) guesses
    except (ValueError, RecursionError) as exc:
        raise TypeError(f"{where}: value is not JSON: {exc}") from exc
    values.encode(decoded, where=where, max_bytes=max_bytes)  # NaN, surrogates: as for users
    return raw


def check_stored_retry_policy(stored: str | None, *, where: str) -> str | None:
    """Refuse a task's stored retry policy that workers could not read (``None`` passes).

    Raises:
        ValueError: not a policy :func:`cereal.retry.load_policy` accepts.
    """
    if stored is None:
        return None
    try:
        load_policy(stored)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return stored


def check_new_task(task: NewTask, *, where: str, max_bytes: int) -> NewTask:
    """Refuse a task to enqueue whose name, parameters, start time or retry policy is bad.

    Raises:
        ValueError / TypeError: naming the field (``where`` says which task).
    """
    name_checks.check_name(task.task_name, what=f"{where} task name")
    check_encoded_value(task.parameters, where=f"{where} parameters", max_bytes=max_bytes)
    if task.start_after is not None:
        times.to_utc(task.start_after, name=f"{where} start_after")
    check_stored_retry_policy(task.retry_policy, where=f"{where} retry_policy")
    check_concurrency(
        task.concurrency_key,
        task.concurrency_limit,
        where=where,
        rate_starts=task.rate_limit_starts,
        rate_seconds=task.rate_limit_seconds,
    )
    check_priority(task.priority, where=where)
    if task.idempotency_key is not None:
        name_checks.check_name(task.idempotency_key, what=f"{where} idempotency_key")
    return task


def check_workflow_concurrency(key: object, limit: object, *, where: str) -> None:
    """Refuse a bad workflow concurrency key or limit: they go together, or neither.

    Raises:
        ValueError / TypeError: naming the field.
    """
    if key is None and limit is None:
        return
    if key is None or limit is None:
        raise ValueError(
            f"{where}: concurrency_key and concurrency_limit go together (got "
            f"concurrency_key={key!r:.80}, concurrency_limit={limit!r})"
        )
    check_concurrency(key, limit, where=where)


MAX_CONCURRENCY_LIMIT = 10_000
"""The highest concurrency limit a task may carry."""


def check_concurrency(
    key: object,
    limit: object,
    *,
    where: str,
    rate_starts: object = None,
    rate_seconds: object = None,
) -> None:
    """Refuse a bad flow-control key, limit or rate: limits without a key, a key without one.

    A key (1-255 printable characters, the name rules) goes with a
    concurrency limit (an int from 1 to :data:`MAX_CONCURRENCY_LIMIT`), a
    rate limit (``rate_starts`` per ``rate_seconds``, checked as
    :class:`~cereal.RateLimit` checks them) or both; neither limit goes
    without a key.

    Raises:
        ValueError / TypeError: naming the field (``where`` says which task).
    """
    rated = rate_starts is not None or rate_seconds is not None
    if key is None and limit is None and not rated:
        return
    if key is None:
        raise ValueError(
            f"{where}: a concurrency_limit or rate_limit needs a concurrency_key (got "
            f"concurrency_limit={limit!r}, rate_limit starts={rate_starts!r} per={rate_seconds!r})"
        )
    if limit is None and not rated:
        raise ValueError(
            f"{where}: concurrency_key {key!r:.80} needs a concurrency_limit or a rate_limit"
        )
    name_checks.check_name(key, what=f"{where} concurrency_key")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"{where} concurrency_limit must be an int, got {type(limit).__name__}")
        if not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
            raise ValueError(
                f"{where} concurrency_limit must be from 1 to {MAX_CONCURRENCY_LIMIT}, got {limit}"
            )
    if rated:
        if rate_starts is None or rate_seconds is None:
            raise ValueError(
                f"{where}: a rate limit needs both rate_limit_starts and rate_limit_seconds "
                f"(got {rate_starts!r} and {rate_seconds!r})"
            )
        if isinstance(rate_starts, bool) or not isinstance(rate_starts, int):
            raise TypeError(
                f"{where} rate_limit starts must be an int, got {type(rate_starts).__name__}"
            )
        if not 1 <= rate_starts <= MAX_RATE_STARTS:
            raise ValueError(
                f"{where} rate_limit starts must be from 1 to {MAX_RATE_STARTS}, got {rate_starts}"
            )
        period_seconds(rate_seconds, where=f"{where} rate_limit per")


# W3C Trace Context: version-traceid-parentid-flags in lowercase hex; a later
# version may append fields after a dash, version ff is invalid
_TRACEPARENT = re.compile(
    r"(?!ff)(?P<version>[0-9a-f]{2})-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
    r"(?P<rest>-[\x21-\x7e]*)?"
)

MAX_TRACEPARENT_CHARS = 512
"""The longest trace context kept (version 00's is 55 characters)."""


def usable_traceparent(value: object) -> str | None:
    """``value`` when it is a W3C ``traceparent`` a store may keep, else ``None``.

    The Trace Context rule is that a malformed ``traceparent`` is ignored
    (the trace restarts), never an error: a run, a task or a result is
    always stored, with or without its trace context. So this drops, and
    logs at debug level, what a custom observer or a remote client sent that
    is not of the form ``vv-<32 hex>-<16 hex>-<2 hex>`` in lowercase (a
    version above ``00`` may append fields), or is longer than
    :data:`MAX_TRACEPARENT_CHARS`.
    """
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= MAX_TRACEPARENT_CHARS:
        matched = _TRACEPARENT.fullmatch(value)
        if matched is not None and (matched["version"] != "00" or matched["rest"] is None):
            return value
    logger.debug("a malformed traceparent was ignored: %.80r", value)
    return None
