"""The `driftline` command.

    driftline demo                  the whole loop in one process, with a report
    driftline worker                monitor {p}.inputs on Kafka (Faust)
    driftline retrainer             train and publish model versions from {p}.drift
    driftline replay FILE           send a Parquet/CSV file to {p}.inputs
    driftline status | lineage | rollback | backtest | report
    driftline schemas register      the events' JSON Schemas into the Schema Registry

Each group of commands lives next to the code it drives; this module only assembles them.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from driftline.errors import DriftlineError
from driftline.streams.cli import embedded, ingest, loop, schemas


class _Commands(TyperGroup):
    """Every command: a `DriftlineError` (bad config, unknown id, unreachable store, ...) is
    one line on stderr and exit code 2; a traceback means a bug in driftline."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DriftlineError as exc:
            typer.secho(f"Error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="driftline",
    cls=_Commands,
    help="Label-free drift detection on Kafka and automatic, warm-started retraining.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback (a bug) must not print local variables: they can hold passwords and keys.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Label-free drift detection on Kafka and automatic, warm-started retraining."""


@app.command()
def version() -> None:
    """Print the installed driftline version."""
    from importlib.metadata import version as installed

    typer.echo(installed("driftline"))


for module in (embedded, ingest, loop, schemas):
    module.register(app)


def main() -> None:
    """Entry point of the `driftline` console script."""
    app()
