"""What a task executor raised, in a form every store can keep and a reader can use.

The stored text stays ``str(exc)`` (what ``TaskResult.err()`` shows); beside it
go the exception's qualified type name and its traceback, bounded to the
innermost :data:`~cereal.models.MAX_TRACEBACK_FRAMES` frames and the last
:data:`~cereal.models.MAX_TRACEBACK_CHARS` characters (the end of a traceback
names the failing line, so the start is what is cut).
"""

from __future__ import annotations

import traceback

from cereal import values
from cereal.models import MAX_TRACEBACK_CHARS, MAX_TRACEBACK_FRAMES, FailureDetails

_CUT_MARK = "...\n"


def qualified_name(exc_type: type[BaseException]) -> str:
    """``module.QualName`` of an exception type; builtins by their plain name."""
    if exc_type.__module__ == "builtins":
        return exc_type.__qualname__
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def bounded_traceback(exc: BaseException) -> str:
    """``exc``'s formatted traceback (with its causes), innermost frames and end kept."""
    text = "".join(traceback.format_exception(exc, limit=-MAX_TRACEBACK_FRAMES))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = _CUT_MARK + text[-(MAX_TRACEBACK_CHARS - len(_CUT_MARK)) :]
    return values.storable_text(text)


def describe(exc: BaseException) -> FailureDetails:
    """The stored failure of a task whose executor raised ``exc``."""
    return FailureDetails(
        error=values.storable_text(str(exc)),
        error_type=qualified_name(type(exc)),
        error_traceback=bounded_traceback(exc),
    )
