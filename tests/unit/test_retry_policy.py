"""RetryPolicy: validation, backoff arithmetic, stored form, matching non-retryable types."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

import cereal
from cereal import Manager, RetryPolicy
from cereal.drivers.memory import MemoryDriver
from cereal.retry import (
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    NO_RETRY,
    check_policy,
    check_stored_policy,
    load_policy,
    load_policy_or_none,
)
from cereal.testing import enqueued_tasks, make_instance


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be between 1 and 1000000"),
        ({"max_attempts": 2.5}, TypeError, "max_attempts must be an int"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int"),
        ({"initial_backoff": -1}, ValueError, "initial_backoff"),
        ({"initial_backoff": "1s"}, TypeError, "initial_backoff"),
        ({"max_backoff": float("inf")}, ValueError, "max_backoff"),
        ({"initial_backoff": 10, "max_backoff": 5}, ValueError, "must not be below"),
        ({"multiplier": 0.5}, ValueError, "multiplier must be at least 1"),
        ({"multiplier": float("nan")}, ValueError, "multiplier must be finite"),
        ({"jitter": 1.0}, ValueError, "jitter must be in [0, 1)"),
        ({"jitter": -0.1}, ValueError, "jitter must be in [0, 1)"),
        ({"jitter": "0.1"}, TypeError, "jitter must be a number"),
        ({"non_retryable": [ValueError]}, TypeError, "non_retryable must be a tuple"),
        ({"non_retryable": (int,)}, TypeError, "non_retryable must be a tuple"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error(
    options: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=re.escape(text)):
        RetryPolicy(**options)


def test_defaults_mean_one_attempt_and_durations_may_be_timedeltas() -> None:
    assert RetryPolicy().max_attempts == 1
    assert cereal.RetryPolicy is RetryPolicy
    policy = RetryPolicy(initial_backoff=timedelta(seconds=2), max_backoff=timedelta(minutes=1))
    assert policy == RetryPolicy(initial_backoff=2.0, max_backoff=60.0)


def test_backoff_grows_by_the_multiplier_up_to_the_cap_and_jitter_stays_within_bounds() -> None:
    stored = load_policy(
        RetryPolicy(max_attempts=10, initial_backoff=1, max_backoff=5, jitter=0.2).to_json()
    )
    assert [stored.base_backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert stored.backoff(2, -1.0) == pytest.approx(1.6)
    assert stored.backoff(2, 1.0) == pytest.approx(2.4)
    assert stored.least_backoff(2) == pytest.approx(1.6)
    assert stored.backoff(4, 1.0) == 5.0  # the cap holds after the jitter too
    assert stored.base_backoff(10_000) == 5.0  # no overflow for huge attempt numbers


class AppError(Exception):
    pass


class NotFound(AppError):
    pass


def test_non_retryable_types_are_stored_by_name_and_match_subclasses() -> None:
    stored = load_policy(RetryPolicy(max_attempts=3, non_retryable=(AppError,)).to_json())
    assert stored.non_retryable == frozenset({f"{__name__}.AppError"})
    assert not stored.retries(NotFound("x"), 1)
    assert stored.retries(RuntimeError("x"), 1)
    assert stored.retries(None, 2)  # a timeout or a lost lease
    assert not stored.retries(RuntimeError("x"), 3)  # no attempts left


def test_a_damaged_stored_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        load_policy('{"max_attempts": "x"}')


def test_retry_must_be_a_policy_on_register_and_on_enqueue() -> None:
    manager = Manager(MemoryDriver())
    with pytest.raises(TypeError, match=r"retry must be a cereal\.RetryPolicy"):
        manager.register_task_executor("t", lambda task: None, retry=3)  # type: ignore[arg-type]
    w = make_instance()
    with pytest.raises(TypeError, match=r"retry must be a cereal\.RetryPolicy"):
        w.enqueue_task("t", retry={"max_attempts": 2})  # type: ignore[arg-type]
    assert enqueued_tasks(w.continue_()) == []  # nothing was buffered


def test_the_testing_instance_shows_the_policy_an_enqueue_stores() -> None:
    w = make_instance()
    policy = RetryPolicy(max_attempts=4)
    w.enqueue_task("t", {"x": 1}, retry=policy)
    w.enqueue_task("u")
    first, second = enqueued_tasks(w.continue_())
    assert first.retry_policy == policy.to_json()
    assert second.retry_policy is None


# ---- bounds that fit every store (issue 17, point 4) -------------------------------------

YEAR_PLUS = MAX_BACKOFF + 1


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        ({"initial_backoff": 1e13, "max_backoff": 1e13}, ValueError, "initial_backoff must be"),
        ({"max_backoff": YEAR_PLUS}, ValueError, "max_backoff must be between 0 and 31622400"),
        ({"max_backoff": timedelta(days=367)}, ValueError, "max_backoff must be between"),
        ({"initial_backoff": 10**400, "max_backoff": 10**400}, ValueError, "initial_backoff"),
        ({"initial_backoff": float("nan")}, ValueError, "initial_backoff must be finite"),
        ({"max_backoff": float("inf")}, ValueError, "max_backoff must be finite"),
        ({"initial_backoff": -0.5}, ValueError, "initial_backoff must be between 0"),
        ({"initial_backoff": timedelta(seconds=-1)}, ValueError, "initial_backoff must be"),
        ({"initial_backoff": True}, TypeError, "initial_backoff must be seconds"),
        ({"max_attempts": 1_000_001}, ValueError, "max_attempts must be between 1 and 1000000"),
        ({"max_attempts": -3}, ValueError, "max_attempts must be between 1"),
        ({"max_attempts": 2.0}, TypeError, "max_attempts must be an int, got float"),
        ({"max_attempts": "lots"}, TypeError, "max_attempts must be an int, got str"),
        ({"multiplier": float("inf")}, ValueError, "multiplier must be finite"),
        ({"multiplier": 10**400}, ValueError, "multiplier must be finite"),
        ({"multiplier": -2}, ValueError, "multiplier must be at least 1"),
        ({"multiplier": False}, TypeError, "multiplier must be a number"),
        ({"jitter": float("nan")}, ValueError, "jitter must be finite"),
        ({"jitter": True}, TypeError, "jitter must be a number"),
    ],
)
def test_a_policy_out_of_the_stores_bounds_is_refused(
    options: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=re.escape(text)):
        RetryPolicy(**options)


def test_the_bounds_themselves_are_accepted_and_stored() -> None:
    policy = RetryPolicy(
        max_attempts=MAX_ATTEMPTS, initial_backoff=MAX_BACKOFF, max_backoff=timedelta(days=366)
    )
    stored = load_policy(policy.to_json())
    assert (stored.max_attempts, stored.max_backoff) == (MAX_ATTEMPTS, MAX_BACKOFF)
    assert stored.backoff(1, 1.0) == MAX_BACKOFF  # the cap holds after the jitter


def _stored(**fields: Any) -> str:
    base: dict[str, Any] = {
        "max_attempts": 3,
        "initial_backoff": 1,
        "max_backoff": 10,
        "multiplier": 2,
        "jitter": 0.1,
        "non_retryable": [],
    }
    return json.dumps({**base, **fields})


@pytest.mark.parametrize(
    ("stored", "text"),
    [
        (_stored(initial_backoff=1e13, max_backoff=1e13), "initial_backoff must be between 0"),
        (_stored(max_attempts=2.5), "max_attempts must be an int, got float"),
        (_stored(max_attempts="lots"), "max_attempts must be an int, got str"),
        (_stored(max_attempts=True), "max_attempts must be an int, got bool"),
        (_stored(max_attempts=0), "max_attempts must be between 1 and 1000000"),
        (_stored(max_attempts=2**40), "max_attempts must be between 1 and 1000000"),
        (_stored(initial_backoff=-1), "initial_backoff must be between 0"),
        (_stored(max_backoff=True), "max_backoff must be seconds"),
        (
            '{"max_attempts": 3, "initial_backoff": NaN, "max_backoff": 10, "multiplier": 2,'
            ' "jitter": 0}',
            "initial_backoff must be finite",
        ),
        (
            '{"max_attempts": 3, "initial_backoff": 1, "max_backoff": Infinity, "multiplier": 2,'
            ' "jitter": 0}',
            "max_backoff must be finite",
        ),
        (_stored(multiplier=0.5), "multiplier must be at least 1"),
        (_stored(jitter=1), "jitter must be in [0, 1)"),
        (_stored(non_retryable="ValueError"), "non_retryable must be a list of class names"),
        (_stored(non_retryable=[3]), "non_retryable must be a list of class names"),
        ('{"max_attempts": 3}', "missing initial_backoff, max_backoff, multiplier, jitter"),
        ("[3]", "a JSON object is needed, got list"),
        ("{not json", "Expecting property name"),
        ("[" * 100_000, "invalid retry policy"),  # nested past the recursion limit
    ],
)
def test_a_stored_policy_out_of_bounds_is_refused_when_read_back(stored: str, text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text)) as refused:
        load_policy(stored)
    assert str(refused.value).startswith("invalid retry policy: ")
    # the check for policies that arrive stored (the gRPC server's) refuses the same
    with pytest.raises(ValueError, match=re.escape(text)):
        check_stored_policy(stored)
    # and a sweep reads it as a single attempt
    assert load_policy_or_none(stored) == NO_RETRY


def test_a_valid_stored_policy_passes_the_stored_check_unchanged() -> None:
    text = RetryPolicy(max_attempts=4, non_retryable=(KeyError,)).to_json()
    assert check_stored_policy(text) == text
    assert check_stored_policy(None) is None
    with pytest.raises(TypeError, match="retry_policy must be a JSON string or None"):
        check_stored_policy(b"{}")


def test_a_policy_altered_after_construction_is_refused_at_register_and_enqueue() -> None:
    # a frozen dataclass can still be altered: the entry points check again
    policy = RetryPolicy(max_attempts=2)
    object.__setattr__(policy, "initial_backoff", 1e13)
    object.__setattr__(policy, "max_backoff", 1e13)
    manager = Manager(MemoryDriver())
    with pytest.raises(ValueError, match="initial_backoff must be between 0"):
        manager.register_task_executor("t", lambda task: None, retry=policy)
    assert list(manager.task_names) == []
    w = make_instance()
    with pytest.raises(ValueError, match="initial_backoff must be between 0"):
        w.enqueue_task("t", retry=policy)
    assert enqueued_tasks(w.continue_()) == []  # nothing was buffered
    altered = RetryPolicy()
    object.__setattr__(altered, "max_attempts", 2.5)
    with pytest.raises(TypeError, match="max_attempts must be an int, got float"):
        check_policy(altered)
