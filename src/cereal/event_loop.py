"""Which event loop runs a cereal process: uvloop when installed, else asyncio's own.

A worker spends a good part of its CPU in the event loop (wakeups from
threads, callbacks, socket reads); uvloop does the same work for less (see
``bench/README.md``: 0.75x worker CPU per task and 1.21x the drain). It is an
optional extra, ``pip install 'cereal-workflows[uvloop]'``; nothing depends
on it. :func:`run` is what the ``cereal`` command uses; call it in place of
``asyncio.run`` to get the same choice in your own program.

``CEREAL_EVENT_LOOP`` overrides the choice: ``asyncio`` always takes
asyncio's loop, ``uvloop`` requires uvloop (an error when it is missing),
``auto`` (or unset) takes uvloop when it can be imported.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["ENVIRONMENT_VARIABLE", "chosen_loop", "run", "running_loop"]

ENVIRONMENT_VARIABLE = "CEREAL_EVENT_LOOP"
"""The environment variable that names the loop: ``auto`` (default), ``asyncio`` or ``uvloop``."""

_CHOICES = ("auto", "asyncio", "uvloop")

T = TypeVar("T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def chosen_loop() -> str:
    """The loop :func:`run` would use now: ``"uvloop"`` or ``"asyncio"``.

    Raises:
        ValueError: ``CEREAL_EVENT_LOOP`` holds something else than the three
            choices, or asks for uvloop where it is not installed.
    """
    return _choose()[0]


def running_loop() -> str:
    """The kind of the loop running the caller: ``"uvloop"`` or ``"asyncio"``.

    Raises:
        RuntimeError: no loop runs in this thread.
    """
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a new loop of :func:`chosen_loop`'s kind; its result.

    Like ``asyncio.run``: the loop is closed afterwards, after cancelling
    what is left and shutting down async generators and the default executor.

    Raises:
        ValueError: as :func:`chosen_loop` (``main`` is closed unrun).
    """
    try:
        _, factory = _choose()
    except ValueError:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top
        raise
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


def _choose() -> tuple[str, LoopFactory | None]:
    wanted = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() or "auto"
    if wanted not in _CHOICES:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={wanted!r} is not one of {', '.join(_CHOICES)}")
    if wanted == "asyncio":
        return "asyncio", None
    factory = _uvloop_factory()
    if factory is not None:
        return "uvloop", factory
    if wanted == "uvloop":
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE}=uvloop but uvloop is not installed "
            "(pip install 'cereal-workflows[uvloop]')"
        )
    return "asyncio", None


def _uvloop_factory() -> LoopFactory | None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory
