"""Commands of the driftline CLI for this part of streams (registered by streams.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `driftline` app."""
