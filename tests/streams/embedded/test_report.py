"""The report renders: PNG and HTML are written, and headless Chromium draws the page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from driftline.streams.embedded.runner import (
    AlarmRecord,
    DeploymentRecord,
    MonitorPoint,
    RunResult,
    TrainingRecord,
)
from driftline.streams.evaluation.composite import (
    CompositeAccuracy,
    Concept,
    DeploymentGain,
    PolicyScore,
    TrainingCost,
    detections,
)
from driftline.streams.evaluation.report import (
    Report,
    load_report,
    training_outcome,
    version_names,
    write_report,
)


def _score(policy: str, trainings: int, level: float) -> PolicyScore:
    accuracy = [level - 0.2 * (i % 8 == 0) for i in range(40)]
    return PolicyScore(
        policy=policy,
        accuracy=CompositeAccuracy(
            window=100,
            window_starts=list(range(0, 4000, 100)),
            window_accuracy=[None, *accuracy[1:]],
            mean_accuracy=float(np.mean(accuracy[1:])),
            rows_scored=3900,
        ),
        cost=TrainingCost(
            trainings=trainings,
            deployments=trainings,
            skipped=0,
            training_seconds=1.5 * trainings,
            rows_trained=500 * trainings,
        ),
    )


@pytest.fixture
def report() -> Report:
    concepts = [
        Concept(start=0, end=2000, concept="A", kind="clean", description="clean"),
        Concept(start=2000, end=4000, concept="B", kind="noise", description="stuck <pixels>"),
    ]
    trainings = [
        TrainingRecord(
            row=300,
            training_id="t0",
            trigger="bootstrap",
            status="COMPLETE",
            model_version_id="mv-a",
            deployed=True,
        ),
        TrainingRecord(
            row=2100, training_id="t1", trigger="drift", status="SKIPPED", reason="too few labels"
        ),
        TrainingRecord(
            row=2400,
            training_id="t2",
            trigger="drift",
            status="COMPLETE",
            model_version_id="mv-b",
            warm_start_from="mv-a",
            deployed=True,
        ),
    ]
    run = RunResult(
        policy="drift",
        pipeline="demo",
        rows=4000,
        seconds=3.0,
        points=[
            MonitorPoint(row=r, statistic=1.0 + 3.0 * (2000 <= r < 2400), threshold=2.5)
            for r in range(100, 4001, 100)
        ],
        alarms=[AlarmRecord(row=2080, drift_id="d1", statistic=4.0, threshold=2.5, episode="e")],
        trainings=trainings,
        deployments=[
            DeploymentRecord(
                row=t.row,
                deployment_id=f"dep-{t.training_id}",
                model_version_id=t.model_version_id or "",
                parent_model_version_id=t.warm_start_from,
                metrics={"accuracy": 0.9},
            )
            for t in trainings
            if t.deployed
        ],
    )
    return Report(
        title="Demo <report>",
        rows=4000,
        primary="drift",
        concepts=concepts,
        runs=[run],
        scores=[_score("drift", 2, 0.9), _score("periodic", 6, 0.88), _score("never", 1, 0.7)],
        detections=detections(concepts, [2080]),
        gains=[
            DeploymentGain(
                row=2400,
                model_version_id="mv-b",
                previous_model_version_id="mv-a",
                concept="B",
                rows_scored=1600,
                accuracy_before=0.61,
                accuracy_after=0.83,
            )
        ],
        settings={"detector.ert": 10000},
    )


def test_report_files_round_trip_and_escape_text(report: Report, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path)
    assert load_report(tmp_path) == report
    page = paths["html"].read_text()
    assert "Demo &lt;report&gt;" in page and "<report>" not in page
    assert "stuck &lt;pixels&gt;" in page
    assert "80 rows" in page  # the delay of the one detection
    assert "+0.220" in page  # accuracy gain of the deployment
    assert "v1 (A)" in page  # lineage: v2 warm-started from v1, trained on concept A
    assert [training_outcome(t) for t in report.runs[0].trainings] == [
        "deployed",
        "skipped",
        "deployed",
    ]


def test_missing_report_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pass the directory"):
        load_report(tmp_path)


def _ink(png: Path) -> float:
    """Fraction of pixels that are not (near) white."""
    pixels = image.imread(png)[..., :3]
    return float(np.mean(pixels.min(axis=-1) < 0.9))


def test_chart_has_content(report: Report, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path)
    height, width = image.imread(paths["png"]).shape[:2]
    assert (width, height) == (1500, 950)
    assert _ink(paths["png"]) > 0.02


def test_headless_chromium_renders_the_page(report: Report, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "headless Chromium is needed: apt-get install chromium"
    paths = write_report(report, tmp_path / "run")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,1600",
            f"--screenshot={shot}",
            paths["html"].resolve().as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    pixels = image.imread(shot)[..., :3]
    # The chart's statistic line is the only thing drawn in this blue: without the PNG (a
    # broken image) there is none of it on the page.
    statistic_blue = np.array([31, 119, 180]) / 255
    assert np.sum(np.abs(pixels - statistic_blue).max(axis=-1) < 0.08) > 200
    assert _ink(shot) > 0.03


def test_a_model_deployed_again_keeps_its_name(report: Report, tmp_path: Path) -> None:
    run = report.runs[0]
    again = TrainingRecord(
        row=3500,
        training_id="t3",
        trigger="drift",
        status="COMPLETE",
        model_version_id="mv-a",
        warm_start_from="mv-a",
        deployed=True,
    )
    run = run.model_copy(
        update={
            "trainings": [*run.trainings, again],
            "deployments": [
                *run.deployments,
                DeploymentRecord(row=3500, deployment_id="dep-t3", model_version_id="mv-a"),
            ],
        }
    )
    assert version_names(run, report.concepts) == {"mv-a": "v1 (A)", "mv-b": "v2 (B)"}
    paths = write_report(report.model_copy(update={"runs": [run]}), tmp_path)
    assert "v1 (A) again" in paths["html"].read_text()
