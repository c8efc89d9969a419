"""`driftline demo`, `backtest` and `report` from the command line (small streams)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from driftline.streams.cli import app
from driftline.streams.evaluation.report import load_report

pytestmark = pytest.mark.slow
# Wide enough that rich never wraps an error message across lines.
runner = CliRunner(env={"COLUMNS": "300"})


def test_demo_prints_the_summary_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["demo", "--out", str(out), "--rows-per-concept", "300", "--label-delay", "50"]
    )
    assert result.exit_code == 0, result.output
    for heading in ("Drifts injected vs detected", "Trainings of the drift policy", "Policies"):
        assert heading in result.output
    report = load_report(out)
    assert [r.policy for r in report.runs] == ["drift", "periodic", "never"]
    assert report.rows == 1575

    (out / "report.html").unlink()
    again = runner.invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert (out / "report.html").stat().st_size > 1000


def test_report_of_a_directory_without_a_run_says_what_to_pass(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert "pass the directory" in result.output


def _digits_file(path: Path, rows: int, shift_at: int) -> None:
    digits = load_digits()
    rng = np.random.default_rng(3)
    pick = rng.integers(0, len(digits.target), size=rows)
    x = digits.data[pick].copy()
    x[shift_at:] = np.roll(x[shift_at:].reshape(-1, 8, 8), 2, axis=2).reshape(-1, 64)
    columns = {f"px{i}": x[:, i] for i in range(64)}
    columns["label"] = digits.target[pick]
    pacsv.write_csv(pa.table(columns), path)


def test_backtest_runs_a_user_file_with_a_user_config(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    _digits_file(data, rows=1800, shift_at=1000)
    config = tmp_path / "driftline.toml"
    config.write_text(
        '[pipeline]\nname = "digits-file"\nbootstrap_rows = 300\n'
        "[pipeline.detector]\nert = 50000\n"
        "[pipeline.selection]\nmax_rows = 400\nmin_labelled_rows = 300\n"
    )
    out = tmp_path / "bt"
    result = runner.invoke(
        app,
        [
            "backtest",
            str(data),
            "--config",
            str(config),
            "--out",
            str(out),
            "--label-delay",
            "50",
            "--drift-at",
            "1000",
            "--no-baselines",
        ],
    )
    assert result.exit_code == 0, result.output
    report = load_report(out)
    assert [r.policy for r in report.runs] == ["drift"]
    (detection,) = report.detections
    assert detection.drift.start == 1000
    assert detection.delay is not None and detection.delay < 200
    run = report.run("drift")
    assert any(t.deployed and t.row > 1000 for t in run.trainings)


def test_backtest_rejects_a_file_without_the_label_column(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    pacsv.write_csv(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), data)
    config = tmp_path / "c.toml"
    config.write_text('[pipeline]\nname = "p"\n')
    result = runner.invoke(app, ["backtest", str(data), "--config", str(config)])
    assert result.exit_code != 0
    assert "no column 'label'" in result.output
