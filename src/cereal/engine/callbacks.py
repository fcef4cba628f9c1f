"""Calling one workflow callback the way the engine does, outside the engine.

``cereal.testing`` and the composition patterns (which call their
sub-workflows' callbacks) both need exactly the engine's rules: plain
callbacks run in a worker thread, async ones are awaited, and a callback that
raises, or returns something other than a :class:`~cereal.instance.Decision`,
becomes a failed decision whose text names the exception type and message.
The texts here are the ones ``_workflow_runner.WorkflowRunner`` produces; a
unit test holds the two together.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any

from cereal.executors import call_plain_or_async
from cereal.instance import (
    CancelEvent,
    Decision,
    DecisionKind,
    StartEvent,
    TaskCompleteEvent,
    WorkflowInstance,
    failure_details,
)

logger = logging.getLogger(__name__)

CALLBACK_EVENTS: dict[str, type[Any]] = {
    "on_start": StartEvent,
    "on_task_complete": TaskCompleteEvent,
    "on_cancel": CancelEvent,
}
"""Each callback name with the event type it receives."""


def raised_text(exc: BaseException) -> str:
    """The failure text of a callback that raised ``exc``: ``"<ExceptionType>: <message>"``."""
    return f"{type(exc).__name__}: {exc}"


def not_a_decision_text(callback_name: str, returned: object) -> str:
    """The failure text of a callback that returned ``returned`` instead of a Decision."""
    return (
        f"TypeError: {callback_name} returned {type(returned).__name__}, not a Decision "
        "(return w.continue_(), w.complete() or w.fail())"
    )


def check_callback(callback_name: str, event: object) -> None:
    """Refuse an unknown callback name or an event of the wrong type for it.

    Raises:
        ValueError: ``callback_name`` is not one of the three callbacks.
        TypeError: ``event`` is not the event type that callback receives.
    """
    expected = CALLBACK_EVENTS.get(callback_name)
    if expected is None:
        raise ValueError(
            f"callback_name must be one of {', '.join(CALLBACK_EVENTS)}, got {callback_name!r}"
        )
    if not isinstance(event, expected):
        raise TypeError(f"{callback_name} takes a {expected.__name__}, got {type(event).__name__}")


def _callback(executor: object, callback_name: str, event: object) -> Any:
    check_callback(callback_name, event)
    callback = getattr(executor, callback_name, None)
    if not callable(callback):
        raise TypeError(f"{type(executor).__name__} has no callable {callback_name}(w, ev)")
    return callback


def _failed(instance: WorkflowInstance, callback_name: str, exc: BaseException) -> Decision:
    """The decision for a raising callback, logged with its traceback."""
    logger.error(
        "workflow %s/%s: %s raised",
        instance.workflow_name,
        instance.instance_name,
        callback_name,
        exc_info=exc,
        extra={"event": "callback_failed", "workflow_name": instance.workflow_name},
    )
    details = failure_details(exc)
    return Decision(
        DecisionKind.FAIL,
        error=raised_text(exc),
        error_type=details.error_type,
        error_traceback=details.error_traceback,
    )


def _checked(instance: WorkflowInstance, callback_name: str, decision: object) -> Decision:
    """``decision`` if it is one, else a failed decision (logged)."""
    if not isinstance(decision, Decision):
        message = not_a_decision_text(callback_name, decision)
        logger.error("workflow %s/%s: %s", instance.workflow_name, instance.instance_name, message)
        return Decision(DecisionKind.FAIL, error=message)
    return decision


async def decide(
    executor: object, callback_name: str, instance: WorkflowInstance, event: object
) -> Decision:
    """Run ``executor.<callback_name>(instance, event)`` and return its decision.

    A raising callback or one that returns no :class:`Decision` gives a failed
    decision (logged, with the traceback for a raise), never an exception.

    Raises:
        ValueError / TypeError: see :func:`check_callback`; or the executor
            has no such callback.
    """
    callback = _callback(executor, callback_name, event)
    try:
        decision = await call_plain_or_async(callback, instance, event)
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is None or current.cancelling():
            raise  # the engine is cancelling us (stop): not the callback's failure
        logger.error(
            "workflow %s/%s: %s raised CancelledError",
            instance.workflow_name,
            instance.instance_name,
            callback_name,
            extra={"event": "callback_failed", "workflow_name": instance.workflow_name},
        )
        return Decision(DecisionKind.FAIL, error=raised_text(exc))
    except Exception as exc:
        return _failed(instance, callback_name, exc)
    return _checked(instance, callback_name, decision)


def decide_in_thread(
    executor: object,
    callback_name: str,
    instance: WorkflowInstance,
    event: object,
    loop: asyncio.AbstractEventLoop,
) -> Decision:
    """:func:`decide` for a plain callback, called on a worker thread (not the loop's).

    Lets a batch of plain callbacks run in one thread hop. A callback that
    returns an awaitable has it awaited on ``loop``.

    Raises:
        ValueError / TypeError: as for :func:`decide`.
    """
    callback = _callback(executor, callback_name, event)
    try:
        decision = callback(instance, event)
        if inspect.isawaitable(decision):
            decision = asyncio.run_coroutine_threadsafe(_await(decision), loop).result()
    except Exception as exc:
        return _failed(instance, callback_name, exc)
    return _checked(instance, callback_name, decision)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
