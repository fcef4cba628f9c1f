#!/usr/bin/env python3
"""Write docs/api-reference.md: cereal's public API, generated from its docstrings.

Run with the project's environment (cereal and its dependencies importable):

    .venv/bin/python scripts/api_reference.py          # rewrite docs/api-reference.md
    .venv/bin/python scripts/api_reference.py --check  # exit 1 if the file is stale

Each module below is listed with its docstring, then every public name (its
``__all__``, or the public classes and functions defined in it): the
signature and the docstring, and for classes their public methods and
properties. A name re-exported by a later module links to where it is
documented. tests/unit/test_api_reference.py fails when the checked-in file
differs from what this script writes.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "api-reference.md"

MODULES = (
    "cereal",
    "cereal.errors",
    "cereal.drivers",
    "cereal.models",
    "cereal.recurrence",
    "cereal.values",
    "cereal.testing",
    "cereal.patterns",
    "cereal.multiworkflow",
    "cereal.event_loop",
)

HEADER = """\
# cereal API reference

Generated from the docstrings by `scripts/api_reference.py`; do not edit by
hand (`.venv/bin/python scripts/api_reference.py` rewrites it, and a test
fails when it is stale). How the parts fit: [architecture.md](architecture.md);
the command line: the [README](../README.md#the-command-line).
"""


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, else the public classes and functions defined in ``module``."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return sorted(declared, key=str.lower)
    return sorted(
        (
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and getattr(value, "__module__", None) == module.__name__
        ),
        key=str.lower,
    )


def doc(obj: Any) -> str:
    text = inspect.getdoc(obj) or ""
    return text.strip()


def anchor(module: str, name: str) -> str:
    return f"{module}.{name}".replace(".", "").replace("_", "").lower()


class _Source:
    """An annotation kept as the source text it was written as (no quotes around it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _plain(annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return annotation
    return _Source(
        annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    )


def signature(obj: Any, *, method: bool = False) -> str:
    """``(parameters) -> return`` as written in the source; no ``self``, no class return."""
    try:
        found = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parameters = [p.replace(annotation=_plain(p.annotation)) for p in found.parameters.values()]
    if method and parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    returns = inspect.Signature.empty if inspect.isclass(obj) else _plain(found.return_annotation)
    return str(found.replace(parameters=parameters, return_annotation=returns))


def kind_of(value: Any) -> str:
    if inspect.isclass(value):
        if issubclass(value, BaseException):
            return "exception"
        if issubclass(value, enum.Enum):
            return "enum"
        return "class"
    if inspect.iscoroutinefunction(value):
        return "async function"
    if inspect.isfunction(value):
        return "function"
    if inspect.ismodule(value):
        return "module"
    return "constant"


def members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties of ``cls`` and its cereal base classes."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("cereal"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                found[name] = value
    return sorted(found.items())


def render_member(cls: type, name: str, value: Any) -> list[str]:
    if isinstance(value, property):
        title = f"#### `{cls.__name__}.{name}` (property)"
        text = doc(value)
    else:
        prefix = "async " if inspect.iscoroutinefunction(value) else ""
        title = f"#### `{prefix}{cls.__name__}.{name}{signature(value, method=True)}`"
        text = doc(value)
    return [title, "", text, ""] if text else [title, ""]


def render_name(module: ModuleType, name: str, value: Any) -> list[str]:
    kind = kind_of(value)
    lines = [f'<a id="{anchor(module.__name__, name)}"></a>', ""]
    if kind in ("class", "exception"):
        bases = [b.__name__ for b in value.__bases__ if b is not object]
        based = f" ({', '.join(bases)})" if bases else ""
        lines += [f"### {kind} `{name}{signature(value)}`{based}", ""]
    elif kind == "enum":
        lines += [f"### enum `{name}`", ""]
    elif kind in ("function", "async function"):
        lines += [f"### {kind} `{name}{signature(value)}`", ""]
    elif kind == "module":
        lines += [f"### module `{name}`", "", f"See `{value.__name__}` below.", ""]
        return lines
    else:
        lines += [f"### constant `{name}` = `{value!r}`", ""]
        return lines
    text = doc(value)
    if text:
        lines += [text, ""]
    if kind == "enum":
        lines += ["Members: " + ", ".join(f"`{m.name}`" for m in value), ""]
    if inspect.isclass(value):
        for member_name, member in members(value):
            lines += render_member(value, member_name, member)
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    sys.path.insert(0, str(ROOT / "src"))
    lines = [HEADER]
    documented: dict[int, tuple[str, str]] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", doc(module), ""]
        for name in public_names(module):
            value = getattr(module, name)
            home = documented.get(id(value))
            if home is not None and not isinstance(value, (str, int, float)):
                where = f"{home[0]}.{home[1]}"
                lines += [f"- `{name}`: see [`{where}`](#{anchor(*home)})", ""]
                continue
            documented[id(value)] = (module_name, name)
            lines += render_name(module, name, value)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run scripts/api_reference.py", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
