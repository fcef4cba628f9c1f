"""Command-line parsing and help beyond typer's defaults.

Two things typer does not do by itself:

- Global options (``--db URL``, ``-v``/``--verbose``) are accepted anywhere
  before a ``--``, also after the command (``cereal workflows list --db X``):
  :class:`CerealGroup` moves them in front of the command before parsing.
- Help shows value placeholders that mean something to a user (``JSON``,
  ``URL``, ``TEXT``), and none at all for flags and arguments, instead of
  typer's ``<bool>`` and ``<str>``: :func:`plain_help_placeholders`.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

DISTRIBUTION = "cereal-workflows"
"""The name the package is built and installed under (the import name is ``cereal``)."""

GLOBAL_FLAGS = frozenset({"-v", "--verbose"})
"""Global options without a value."""
GLOBAL_VALUED = frozenset({"--db"})
"""Global options that take the next argument as their value."""

_TYPE_PLACEHOLDERS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER"}


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with every global option (and its value) moved to the front, order kept.

    Nothing after a ``--`` moves: from there on every argument is positional.
    """
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg in GLOBAL_FLAGS or any(arg.startswith(f"{name}=") for name in GLOBAL_VALUED):
            front.append(arg)
        elif arg in GLOBAL_VALUED and index + 1 < len(args):
            front.extend(args[index : index + 2])
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


class CerealGroup(TyperGroup):
    """The root ``cereal`` group: global options may also follow the command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse with the global options moved in front of the command."""
        return super().parse_args(ctx, hoist_global_options(args))


class _PlainOption(TyperOption):
    """An option whose help shows its metavar, a plain type name, or nothing for a flag."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        bare = self.bare_type()
        return _TYPE_PLACEHOLDERS.get(bare, bare.upper())


class _PlainArgument(TyperArgument):
    """An argument whose help shows only its name (the metavar), no type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def plain_help_placeholders(command: Any) -> None:
    """Give every option and argument of ``command`` and its subcommands plain help."""
    # the --help option is built on first use and kept: build it now to include it
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        # typer builds its own parameter classes and offers no per-app setting for
        # the type column, so the built parameters get a subclass that renders it
        if type(param) is TyperOption:
            param.__class__ = _PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            plain_help_placeholders(sub)


def version_text() -> str:
    """``cereal <version>`` of the installed distribution."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "(version unknown: not installed as a distribution)"
    return f"cereal {version}"


def show_version(value: bool) -> None:
    """Callback of ``--version``: print the version and end the command line.

    Raises:
        typer.Exit: after printing, when the option is given.
    """
    if value:
        typer.echo(version_text())
        raise typer.Exit()


def build(app: typer.Typer) -> Any:
    """The click command of ``app`` (typer's vendored click) with plain help placeholders."""
    command = typer.main.get_command(app)
    plain_help_placeholders(command)
    return command
