"""The `driftline` command.

    driftline demo                  the whole loop in one process, with a report
    driftline worker                monitor {p}.inputs on Kafka (Faust)
    driftline retrainer             train and publish model versions from {p}.drift
    driftline replay FILE           send a Parquet/CSV file to {p}.inputs
    driftline status | lineage | rollback | backtest | report

Each group of commands lives next to the code it drives; this module only assembles them.
"""

from __future__ import annotations

import typer

from streams import cli_embedded, cli_ingest, cli_loop

app = typer.Typer(
    name="driftline",
    help="Label-free drift detection on Kafka and automatic, warm-started retraining.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Label-free drift detection on Kafka and automatic, warm-started retraining."""


@app.command()
def version() -> None:
    """Print the installed driftline version."""
    from importlib.metadata import version as installed

    typer.echo(installed("driftline"))


for module in (cli_embedded, cli_ingest, cli_loop):
    module.register(app)


def main() -> None:
    """Entry point of the `driftline` console script."""
    app()
