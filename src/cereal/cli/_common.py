"""What every command shares: the global options, running a coroutine, error handling.

Each command parses its arguments, then hands a coroutine to :func:`run`,
which runs it on :func:`cereal.event_loop.run` (uvloop when installed) and
turns the errors a user can cause (``CerealError``, ``ValueError``,
``TypeError``) into one red line (the message alone, no exception class
name) and a non-zero exit. With ``-v`` the traceback follows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer

from cereal import errors, event_loop, values
from cereal.cli import _render
from cereal.drivers import open_driver
from cereal.manager import Manager
from cereal.models import RequeueOutcome

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///./cereal.db"
"""The database used when neither ``--db`` nor ``CEREAL_DATABASE_URL`` is given."""

TracebackFlag = Annotated[
    bool, typer.Option("--traceback", help="Print each failure's traceback below the table.")
]
"""The ``--traceback`` option of the dead-letter listings."""

EXIT_ERROR = 1
"""Exit status of a command that failed on a cereal error or bad input."""

EXIT_INTERRUPTED = 130
"""Exit status of a command ended by a signal (Ctrl+C), as shells report SIGINT."""


@dataclass(frozen=True)
class CliState:
    """The global options, shared with every command through ``typer.Context.obj``."""

    database_url: str = DEFAULT_DATABASE_URL
    verbose: bool = False
    database_url_given: bool = False
    """True when ``--db`` or ``CEREAL_DATABASE_URL`` named the database (not the default)."""


class CliError(Exception):
    """A problem with the command line itself (bad JSON, missing option); exits non-zero."""


def state(ctx: typer.Context) -> CliState:
    """The global options of this invocation."""
    found = ctx.find_root().obj
    return found if isinstance(found, CliState) else CliState()


_NAMED_ERRORS = (
    errors.WorkflowInstanceNotFoundError,
    errors.WorkflowInstanceExistsError,
    errors.WorkflowScheduleNotFoundError,
    errors.WorkflowScheduleExistsError,
)
"""Errors about one instance or schedule: their line names it (``subject``)."""


def run(ctx: typer.Context, coroutine: Coroutine[Any, Any, T], *, subject: str = "") -> T:
    """Run ``coroutine`` to completion; exit non-zero with a one-line message on user errors.

    ``subject`` (``workflow/instance``) is named in a not-found or
    already-exists error.

    Raises:
        typer.Exit: with status :data:`EXIT_ERROR` after printing the error.
    """
    try:
        # uvloop when the extra is installed (CEREAL_EVENT_LOOP overrides): see cereal.event_loop
        return event_loop.run(coroutine)
    except _NAMED_ERRORS as exc:
        fail(ctx, f"{_describe(exc)}: {subject}" if subject else _describe(exc))
    except (errors.CerealError, CliError, ValueError, TypeError) as exc:
        fail(ctx, _describe(exc))
    except KeyboardInterrupt:
        _render.error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def fail(ctx: typer.Context, message: str) -> NoReturn:
    """Print ``message`` as the error (with the traceback under ``-v``) and exit non-zero.

    Raises:
        typer.Exit: always.
    """
    _render.error(message)
    if state(ctx).verbose:
        _render.traceback()
    raise typer.Exit(EXIT_ERROR)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def parse_json(text: str | None, *, option: str = "--parameters") -> Any:
    """Decode a JSON option; ``None`` (option not given) stays ``None``.

    ``@path`` reads the JSON from a file and ``-`` from standard input (no
    JSON text starts with ``@`` or is a lone ``-``, so neither is ambiguous).

    Raises:
        CliError: the file cannot be read, or the text is not valid JSON,
            naming the option and the position.
    """
    if text is None:
        return None
    text = _json_source(text, option)
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{option} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            f"{_excerpt(text)}"
        ) from exc
    except ValueError as exc:
        raise CliError(f"{option} is not valid JSON ({exc}): {_excerpt(text)}") from exc
    try:
        values.encode(value, where=option, max_bytes=len(text.encode("utf-8", "replace")) * 6 + 16)
    except (TypeError, ValueError) as exc:  # e.g. a lone surrogate escape such as "\ud800"
        raise CliError(f"{option} is not valid JSON text: {exc}") from exc
    return value


def _json_source(text: str, option: str) -> str:
    """The JSON text an option names: itself, a file's content (``@path``) or stdin (``-``)."""
    if text == "-":
        return sys.stdin.read()
    if not text.startswith("@"):
        return text
    path = text[1:]
    if not path:
        raise CliError(f"{option} @: give a file name after '@' (or '-' for standard input)")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{option} {text}: cannot read the file: {exc}") from exc


def _excerpt(text: str, limit: int = 80) -> str:
    """The start of ``text`` for an error message (a file may hold megabytes)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _refuse_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` parse in Python but are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


@asynccontextmanager
async def storage_manager(
    ctx: typer.Context, *, writes: str | None = None
) -> AsyncIterator[Manager]:
    """A Manager on the ``--db`` database, used for storage calls only (never started).

    The driver is opened on the first call and closed on exit. ``writes``
    names what the command stores: a memory:// store is then refused, since
    it would vanish when the command exits.

    Raises:
        CliError: ``writes`` is given and the database is memory://.
    """
    url = state(ctx).database_url
    if writes is not None and urlsplit(url).scheme == "memory":
        raise CliError(
            f"memory:// keeps nothing once this command exits, so {writes} would vanish;"
            " use a sqlite:///, postgresql:// or grpc:// URL"
        )
    manager = Manager(open_driver(url))
    try:
        yield manager
    finally:
        await manager.stop()


def report_requeue(what: str, outcomes: dict[str, RequeueOutcome], *, as_json: bool) -> None:
    """Show what a requeue did with each id; exit non-zero unless every one was requeued.

    Raises:
        typer.Exit: with status :data:`EXIT_ERROR` when an id was not requeued.
    """
    if as_json:
        _render.print_json({given: str(outcome) for given, outcome in outcomes.items()})
    else:
        _render.requeue_outcomes(what, outcomes)
    if any(outcome is not RequeueOutcome.REQUEUED for outcome in outcomes.values()):
        raise typer.Exit(EXIT_ERROR)


def first_entries(found: Sequence[T], limit: int) -> tuple[list[T], int]:
    """The first ``limit`` entries of a short listing read whole, and how many were left out.

    For listings bounded by what runs (live workers, task names with work),
    which the store returns whole; the caller's last line names the
    ``--limit`` that shows the rest.
    """
    return list(found[:limit]), max(0, len(found) - limit)


def newest_page(
    found: Sequence[T], limit: int, cursor: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """One page of a listing read with ``limit + 1`` entries, and the next page's cursor.

    The extra entry only tells that an older page exists; the cursor is that
    of the page's last entry (``None``: this is the oldest page).
    """
    older = cursor(found[limit - 1]) if len(found) > limit else None
    return list(found[:limit]), older
