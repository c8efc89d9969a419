"""Drift-triggered retraining on default settings, on streams the demo does not contain."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.streams.evaluation.benchmark_streams import run_stream


def scores(name: str, out: Path) -> dict[str, tuple[float, int]]:
    report = run_stream(name, out)
    return {s.policy: (s.accuracy.mean_accuracy, s.cost.trainings) for s in report.scores}


@pytest.mark.slow
def test_recurring_concept_drift_matches_periodic_with_half_the_trainings(tmp_path: Path) -> None:
    s = scores("gaussian-recurring", tmp_path)
    (drift, n_drift), (periodic, n_periodic), (never, _) = s["drift"], s["periodic"], s["never"]
    assert drift >= periodic - 0.003 and n_drift <= n_periodic / 2, s
    assert drift >= never + 0.05, s  # retraining pays here, and the drift policy collects it


@pytest.mark.slow
def test_a_stream_without_change_costs_few_trainings(tmp_path: Path) -> None:
    s = scores("false-alarm", tmp_path)
    assert s["drift"][1] <= 2 and s["drift"][0] >= s["never"][0] - 0.003, s
