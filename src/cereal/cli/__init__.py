"""The ``cereal`` command line (typer + rich).

The CLI is the only part of cereal that reads environment variables
(``CEREAL_DATABASE_URL``) and configures logging. Global options come
before the command::

    cereal --db sqlite:///./cereal.db workflows list --running
    cereal -v worker myapp:manager

Each command group lives in its own module; all output goes through
:mod:`cereal.cli._render`.
"""

from __future__ import annotations

import logging.config
from typing import Annotated

import typer

from cereal.cli import demo, migrate, schedules, serve, worker, workflows
from cereal.cli._common import DEFAULT_DATABASE_URL, CliState

__all__ = ["app", "configure_logging", "main"]

app = typer.Typer(
    name="cereal",
    help="cereal: a durable workflow and task engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(workflows.app, name="workflows")
app.add_typer(schedules.app, name="schedules")
app.command("demo")(demo.demo)
app.command("worker")(worker.worker)
app.command("migrate")(migrate.migrate)
app.command("serve")(serve.serve)


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
) -> None:
    """cereal: a durable workflow and task engine."""
    configure_logging(verbose)
    ctx.obj = CliState(database_url=db, verbose=verbose)


def main() -> None:
    """Entry point of the ``cereal`` script and ``python -m cereal``."""
    app(prog_name="cereal")
