"""`driftline backtest` on files a new user might hand it: a clear error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftline.streams.cli import app


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("empty.csv", b"", "Empty CSV file"),
        ("long.csv", b"a,label\n" + b"1" * 3_000_000 + b",0\n", "cannot be read as csv"),
        ("bad.parquet", b"not parquet", "cannot be read as parquet"),
    ],
)
def test_an_unreadable_file_is_a_clear_error(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    """On main each of these ended in an ``ArrowInvalid`` traceback."""
    (tmp_path / name).write_bytes(content)
    config = tmp_path / "c.toml"
    config.write_text('[pipeline]\nname = "bt"\n')
    result = CliRunner().invoke(
        app, ["backtest", str(tmp_path / name), "--config", str(config), "--no-baselines"]
    )
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
