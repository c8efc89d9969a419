"""``driftline demo``, ``driftline backtest`` and ``driftline report``: the embedded runner.

Heavy imports (torch through the retrainer, matplotlib) happen inside the commands, so
``driftline --help`` stays fast.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

    from driftline.streams.evaluation.report import Report

_RUNS = Path("driftline-runs")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `driftline` app."""
    app.command()(demo)
    app.command()(backtest)
    app.command()(report)


def demo(
    out: Path | None = typer.Option(
        None, "--out", help="run directory (default: ./driftline-runs/demo-<time>)"
    ),
    rows_per_concept: int = typer.Option(
        2000, min=100, help="about how many rows each of the five concepts lasts"
    ),
    label_delay: int = typer.Option(200, min=0, help="rows between an input and its label"),
    periodic_rows: int | None = typer.Option(
        None, min=1, help="periodic baseline retrains every N rows (default: half a concept)"
    ),
    seed: int = typer.Option(0, help="seed of the sampled stream"),
) -> None:
    """Run the whole loop on bundled data, no broker needed, and write a report.

    Handwritten digits (shipped with scikit-learn) stream in with labels arriving late;
    their inputs drift at known rows: stuck pixels, a camera shift, the original camera
    again (a recurring concept), a class mix. driftline detects each drift without labels,
    retrains warm-started from the most similar past lifecycle, and is compared with
    periodic retraining and never retraining.
    """
    from driftline.streams.evaluation.demo import digits_scenario, run_demo

    out = out or _RUNS / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    scenario = digits_scenario(rows_per_concept, label_delay=label_delay, seed=seed)
    with _progress() as bars:
        result = run_demo(
            out, scenario=scenario, periodic_rows=periodic_rows, progress=_factory(bars)
        )
    _print_summary(result, out)


def backtest(
    file: Path = typer.Argument(..., help="Parquet or CSV file of rows in event-time order"),
    config: Path = typer.Option(
        ..., "--config", help="TOML config file; its pipeline table sets detector, triggers, model"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="run directory (default: ./driftline-runs/backtest-<time>)"
    ),
    label_column: str = typer.Option("label", help="column holding the ground truth"),
    label_delay: int = typer.Option(0, min=0, help="rows between an input and its label"),
    periodic_rows: int | None = typer.Option(
        None, min=1, help="periodic baseline retrains every N rows (default: a tenth)"
    ),
    baselines: bool = typer.Option(True, help="also run the periodic and never baselines"),
    batch_size: int = typer.Option(100, min=1, help="rows per micro-batch"),
    drift_at: list[int] = typer.Option(
        [], "--drift-at", help="row of a known drift (repeatable), to score detection"
    ),
) -> None:
    """Replay your labelled file through your pipeline config, against the baselines.

    Columns: event_id and timestamp if present (else row numbers and one row per second),
    the label column, and every other numeric column as a feature.
    """
    from driftline.config.pipeline import PipelineConfig
    from driftline.streams.evaluation.backtest import backtest as run_backtest
    from driftline.streams.evaluation.backtest import policy_configs
    from driftline.streams.evaluation.composite import Concept

    pipeline = PipelineConfig.from_toml(config)
    stream = _load_stream(file, label_column, label_delay, pipeline.feature_names)
    n = len(stream)
    marks = sorted({r for r in drift_at if 0 < r < n})
    edges = [0, *marks, n]
    concepts = [
        Concept(start=lo, end=hi, concept=f"#{i}", kind="given" if i else "start")
        for i, (lo, hi) in enumerate(itertools.pairwise(edges))
    ]
    configs = policy_configs(
        pipeline, periodic_rows=periodic_rows or max(1, n // 10), baselines=baselines
    )
    out = out or _RUNS / f"backtest-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with _progress() as bars:
        result = run_backtest(
            stream,
            configs,
            out,
            title=f"driftline backtest: {file.name} with pipeline {pipeline.name!r}",
            description=f"{n} rows, labels {label_delay} rows late, config {config.name}",
            concepts=concepts if marks else (),
            batch_size=batch_size,
            progress=_factory(bars),
        )
    _print_summary(result, out)


def report(
    run_dir: Path = typer.Argument(..., help="a directory written by demo or backtest"),
) -> None:
    """Render a run's report again (report.html and report.png) from its report.json."""
    from driftline.streams.evaluation.report import load_report, write_report

    try:
        loaded = load_report(run_dir)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN_DIR") from None
    paths = write_report(loaded, run_dir if run_dir.is_dir() else run_dir.parent)
    typer.echo(f"report: {paths['html']}\nchart:  {paths['png']}")


def _load_stream(
    file: Path, label_column: str, label_delay: int, feature_names: list[str] | None
) -> Any:
    import numpy as np

    from driftline.streams.embedded.runner import LabelledStream
    from driftline.streams.kafka.replay import load_table, split_columns

    table = load_table(file)
    if label_column not in table.column_names:
        raise typer.BadParameter(
            f"{file} has no column {label_column!r} (columns: {table.column_names}); "
            "name the label column with --label-column",
            param_hint="--label-column",
        )
    names = feature_names or split_columns(table, label_column)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise typer.BadParameter(
            f"the config's feature_names {missing} are not columns of {file}", param_hint="FILE"
        )
    X = np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in names])
    y = np.asarray(table.column(label_column).to_pylist(), dtype=object)
    if all(isinstance(v, int) for v in y if v is not None):
        y = y.astype(np.int64) if None not in y else y
    ids = (
        [str(v) for v in table.column("event_id").to_pylist()]
        if "event_id" in table.column_names
        else None
    )
    stamps = (
        table.column("timestamp").to_numpy(zero_copy_only=False)
        if "timestamp" in table.column_names
        else None
    )
    try:
        return LabelledStream.from_arrays(
            X, y, names, timestamps=stamps, event_ids=ids, label_delay=label_delay
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[bold]{task.description:<9}",
        BarColumn(),
        MofNCompleteColumn(),
        "rows",
        "{task.fields[status]}",
        TimeElapsedColumn(),
    )


def _factory(bars: Progress) -> Any:
    def make(policy: str, total: int) -> Any:
        task = bars.add_task(policy, total=total, status="")

        def update(rows: int, run: Any) -> None:
            done = sum(t.status == "COMPLETE" for t in run.trainings)
            status = f"{len(run.alarms)} alarms, {done} trainings, {len(run.deployments)} deployed"
            bars.update(task, completed=rows, status=status)

        return update

    return make


def _print_summary(result: Report, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from driftline.streams.evaluation.report import training_outcome, version_names

    console = Console()
    run = result.run(result.primary)
    if result.detections:
        table = Table(title="Drifts injected vs detected (no labels used)")
        for col in ("injected at row", "drift", "first alarm at row", "delay"):
            table.add_column(col)
        for d in result.detections:
            table.add_row(
                str(d.drift.start),
                f"{d.drift.concept}: {d.drift.description or d.drift.kind}",
                "-" if d.alarm_row is None else str(d.alarm_row),
                "[red]missed[/red]" if d.delay is None else f"{d.delay} rows",
            )
        console.print(table)
        console.print(f"False alarms in clean stretches: {len(result.false_alarms)}")
    names = version_names(run, result.concepts)
    gains = {(g.row, g.model_version_id): g for g in result.gains}
    table = Table(title=f"Trainings of the {run.policy} policy")
    for col in ("row", "trigger", "outcome", "warm-started from", "accuracy old -> new"):
        table.add_column(col)
    for t in run.trainings:
        gain = gains.get((t.row, t.model_version_id or "")) if t.deployed else None
        table.add_row(
            str(t.row),
            t.trigger,
            training_outcome(t)
            + (f" as {names[t.model_version_id]}" if t.deployed and t.model_version_id else ""),
            names.get(t.warm_start_from or "", "scratch") if t.warm_start_from else "scratch",
            f"{gain.accuracy_before:.3f} -> {gain.accuracy_after:.3f}" if gain else "",
        )
    console.print(table)
    table = Table(title="Policies: composite accuracy vs training cost")
    for col in ("policy", "mean composite accuracy", "trainings*", "deployed", "training s"):
        table.add_column(col)
    for s in result.scores:
        table.add_row(
            s.policy,
            f"{s.accuracy.mean_accuracy:.3f}",
            str(s.cost.trainings),
            str(s.cost.deployments),
            f"{s.cost.training_seconds:.1f}",
        )
    console.print(table)
    console.print("* including the first (bootstrap) model every policy trains")
    console.print(f"Report: {out / 'report.html'}  (chart: {out / 'report.png'})")
