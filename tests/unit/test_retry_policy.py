"""RetryPolicy: validation, backoff arithmetic, stored form, matching non-retryable types."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

import cereal
from cereal import Manager, RetryPolicy
from cereal.drivers.memory import MemoryDriver
from cereal.retry import load_policy
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
