"""Composite-model evaluation scores each row with the model that was live for it."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.streams.evaluation.composite import (
    Concept,
    LiveSpan,
    clean_stretches,
    composite_accuracy,
    deployment_gains,
    detections,
    false_alarms,
)


def _constant(model_version_id: str, X: np.ndarray) -> np.ndarray:
    """Model ``m{k}`` always predicts class k."""
    return np.full(len(X), int(model_version_id[1:]))


def test_each_row_is_scored_by_the_model_live_at_that_row() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=1000)
    X = np.zeros((1000, 2))
    spans = [LiveSpan(0, "m0"), LiveSpan(400, "m1"), LiveSpan(700, "m2")]
    acc = composite_accuracy(y, X, spans, _constant, window=100)
    expected = np.concatenate([y[:400] == 0, y[400:700] == 1, y[700:] == 2])
    assert acc.mean_accuracy == pytest.approx(expected.mean())
    assert acc.rows_scored == 1000
    assert acc.window_accuracy[4] == pytest.approx((y[400:500] == 1).mean())
    assert len(acc.window_starts) == len(acc.window_accuracy) == 10


def test_rows_before_the_first_deployment_or_start_are_not_scored() -> None:
    y = np.zeros(300, dtype=int)
    acc = composite_accuracy(
        y, np.zeros((300, 1)), [LiveSpan(150, "m0")], _constant, window=100, start=200
    )
    assert acc.rows_scored == 100
    assert acc.window_accuracy == [None, None, 1.0]


def test_bad_inputs_are_rejected_with_the_value() -> None:
    y = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="X has 5 rows but y_true has 10"):
        composite_accuracy(y, np.zeros((5, 1)), [], _constant)
    with pytest.raises(ValueError, match="sorted by start row, got starts \\[5, 1\\]"):
        composite_accuracy(y, np.zeros((10, 1)), [LiveSpan(5, "m0"), LiveSpan(1, "m1")], _constant)


def test_detections_false_alarms_and_gains() -> None:
    concepts = [
        Concept(start=0, end=1000, concept="A"),
        Concept(start=1000, end=2000, concept="B"),
        Concept(start=2000, end=3000, concept="C"),
    ]
    alarms = [500, 1100, 1300, 2900]
    found = detections(concepts, alarms)
    assert [(d.drift.concept, d.alarm_row, d.delay) for d in found] == [
        ("B", 1100, 100),
        ("C", 2900, 900),
    ]
    stretches = clean_stretches(concepts, [0, 1400])
    assert stretches == [(0, 1000), (1400, 2000)]
    assert false_alarms(alarms, stretches) == [500]

    y = np.array([0] * 1000 + [1] * 1000 + [2] * 1000)
    gains = deployment_gains(
        y, np.zeros((3000, 1)), [LiveSpan(0, "m0"), LiveSpan(1400, "m1")], _constant, concepts
    )
    assert [(g.row, g.concept, g.rows_scored) for g in gains] == [(1400, "B", 600)]
    assert (gains[0].accuracy_before, gains[0].accuracy_after) == (0.0, 1.0)
