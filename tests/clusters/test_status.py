"""`driftline status` on a pipeline with no data yet: one line saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftline.streams.cli import app


def test_status_of_an_empty_pipeline_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DRIFTLINE_CONFIG", raising=False)
    monkeypatch.setenv("DRIFTLINE_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    result = CliRunner().invoke(app, ["status", "--pipeline", "empty"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "has no data yet" in lines[0] and "driftline worker" in lines[0]


def test_tables_print_ids_whole_on_a_narrow_console() -> None:
    import io

    from rich.console import Console
    from rich.table import Table

    from driftline.streams.cli.loop import _print_whole

    ident = "mv-" + "0123456789abcdef" * 4
    table = Table()
    for col in ("when", "model version", "training", "reason"):
        table.add_column(col)
    table.add_row("2026-01-01 00:00:00", ident, ident, "drift at row 12000, 3 features " * 2)
    out = io.StringIO()
    _print_whole(Console(file=out, width=80), table)
    assert out.getvalue().count(ident) == 2
