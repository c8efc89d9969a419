"""``driftline schemas register``: driftline's event schemas into the Schema Registry."""

from __future__ import annotations

from pathlib import Path

import typer

_CONFIG = typer.Option(None, "--config", "-c", help="TOML config file (else $DRIFTLINE_CONFIG).")
_PIPELINE = typer.Option(None, "--pipeline", "-p", help="Pipeline name (else from the config).")

schemas_app = typer.Typer(help="Driftline's event schemas in a Schema Registry.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `driftline` app."""
    app.add_typer(schemas_app, name="schemas")


@schemas_app.command("register")
def register_command(config: Path | None = _CONFIG, pipeline: str | None = _PIPELINE) -> None:
    """Register the JSON Schema of every {p} topic's events under {topic}-value (idempotent)
    at the configured registry (DRIFTLINE_SCHEMA_REGISTRY__URL)."""
    from driftline.config.settings import Settings
    from driftline.streams.kafka.schema_registry import register_schemas

    settings = Settings.load(config, pipeline=pipeline)
    for r in register_schemas(settings.schema_registry, settings.topics):
        typer.echo(f"{r.subject}\tid {r.schema_id}\tversion {r.version}\t{r.schema_name}")
