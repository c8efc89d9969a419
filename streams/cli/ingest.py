"""Commands of the driftline CLI for ingest and monitoring: ``worker`` and ``replay``."""

from __future__ import annotations

from pathlib import Path

import typer

_CONFIG = typer.Option(None, "--config", "-c", help="TOML config file (else $DRIFTLINE_CONFIG).")
_PIPELINE = typer.Option(None, "--pipeline", "-p", help="Pipeline name (else from the config).")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `driftline` app."""
    app.command()(worker)
    app.command()(replay)


def worker(
    config: Path | None = _CONFIG,
    pipeline: str | None = _PIPELINE,
    partitions: int | None = typer.Option(None, help="Partitions of the pipeline's topics."),
    metrics_port: int | None = typer.Option(None, help="Prometheus port (0: off)."),
    loglevel: str = typer.Option("warning", help="Faust log level."),
) -> None:
    """Monitor {p}.inputs on Kafka: validate, archive, detect drift (a Faust worker)."""
    from driftline.config.settings import Settings
    from driftline.streams.kafka.worker import run_worker

    settings = Settings.load(
        config, pipeline=pipeline, partitions=partitions, metrics_port=metrics_port
    )
    run_worker(settings, loglevel=loglevel)


def replay(
    file: Path = typer.Argument(..., help="Parquet or CSV file of inference inputs."),
    config: Path | None = _CONFIG,
    pipeline: str | None = _PIPELINE,
    rate: float | None = typer.Option(None, help="Rows per second (default: as fast as possible)."),
    format: str = typer.Option(
        "json",
        "--format",
        "-f",
        help="json (one event per message), arrow, or registry-json (JSON Schema in the "
        "Confluent wire format, via the configured Schema Registry).",
    ),
    batch_rows: int = typer.Option(1000, help="Rows per Arrow message."),
    labels_delay: int | None = typer.Option(
        None, help="Send each row's label to {p}.labels this many rows later."
    ),
    label_column: str = typer.Option("label", help="Column holding the labels."),
    inject: str | None = typer.Option(
        None, help="Inject drift: shift, scale, noise, correlation or subpopulation."
    ),
    at: int | None = typer.Option(None, help="Row where the injected drift starts."),
    magnitude: float = typer.Option(1.0, help="Size of the injected drift."),
    features: str | None = typer.Option(None, help="Comma-separated features to drift."),
    seed: int = typer.Option(0, help="Seed of the injected drift."),
    limit: int | None = typer.Option(None, help="Send only the first N rows."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Send FILE to {p}.inputs at a chosen rate, with optional delayed labels and drift."""
    from driftline.config.settings import Settings
    from driftline.streams.kafka.clients import ensure_topics
    from driftline.streams.kafka.replay import replay as run_replay

    try:
        settings = Settings.load(config, pipeline=pipeline)
        ensure_topics(settings)
        report = run_replay(
            settings,
            file,
            rate=rate,
            fmt=format,
            batch_rows=batch_rows,
            labels_delay=labels_delay,
            label_column=label_column,
            inject=inject,
            at=at,
            magnitude=magnitude,
            inject_features=features.split(",") if features else None,
            seed=seed,
            limit=limit,
            progress=not quiet,
        )
    except ValueError as exc:  # a bad option value (pyarrow, numpy); ours are DriftlineErrors
        raise typer.BadParameter(str(exc)) from None
    typer.echo(
        f"sent {report.rows} rows in {report.messages} messages and {report.labels} labels "
        f"to {settings.topics.inputs} in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s)"
    )
