"""The ``cereal`` command line (typer + rich).

The CLI is the only part of cereal that reads environment variables
(``CEREAL_DATABASE_URL``) and configures logging. Global options come
before or after the command::

    cereal --db sqlite:///./cereal.db workflows list --running
    cereal workflows list --running --db sqlite:///./cereal.db
    cereal -v worker myapp:manager

Each command group lives in its own module; all output goes through
:mod:`cereal.cli._render`.
"""

from __future__ import annotations

import logging.config
from typing import Annotated

import typer

from cereal.cli import (
    _command_line,
    dashboard,
    demo,
    migrate,
    schedules,
    serve,
    tasks,
    worker,
    workers,
    workflows,
)
from cereal.cli._common import DEFAULT_DATABASE_URL, CliState

__all__ = ["app", "configure_logging", "main"]

app = typer.Typer(
    name="cereal",
    help="cereal: a durable workflow and task engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_command_line.CerealGroup,
)
app.add_typer(workflows.app, name="workflows")
app.add_typer(schedules.app, name="schedules")
app.add_typer(workers.app, name="workers")
app.add_typer(tasks.app, name="tasks")
app.command("demo")(demo.demo)
app.command("worker")(worker.worker)
app.command("migrate")(migrate.migrate)
app.command("serve")(serve.serve)
app.command("dashboard")(dashboard.dashboard)


def configure_logging(verbose: bool) -> None:
    """Send log records to stderr: cereal's at DEBUG with ``-v``, else warnings and errors only."""
    level = "DEBUG" if verbose else "WARNING"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {
                    "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                    "datefmt": "%H:%M:%S",
                }
            },
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                }
            },
            "loggers": {"cereal": {"level": level}},
            "root": {"level": "INFO" if verbose else "WARNING", "handlers": ["stderr"]},
        }
    )


@app.callback()
def global_options(
    ctx: typer.Context,
    db: Annotated[
        str,
        typer.Option(
            "--db",
            metavar="URL",
            envvar="CEREAL_DATABASE_URL",
            help="Database URL: sqlite:///path.db, postgresql://..., memory://",
        ),
    ] = DEFAULT_DATABASE_URL,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging and tracebacks on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_command_line.show_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """cereal: a durable workflow and task engine."""
    configure_logging(verbose)
    source = ctx.get_parameter_source("db")
    given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    ctx.obj = CliState(database_url=db, verbose=verbose, database_url_given=given)


def main() -> None:
    """Entry point of the ``cereal`` script and ``python -m cereal``."""
    _command_line.build(app)(prog_name="cereal")
