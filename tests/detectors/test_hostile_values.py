"""Finite but extreme feature values must not switch a detector off.

Ingest refuses NaN and infinity, so a hostile producer sends the largest finite values
instead. On an earlier release one row of 1e39 (beyond float32) made the MMD detector's
statistic NaN, and NaN never exceeds a threshold: the partition's detector stayed silent
through any later drift, across checkpoints.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors import DriftDetector, make_detector


@pytest.mark.parametrize("kind", ["mmd", "feature"])
@pytest.mark.parametrize("value", [1e39, 1e200, 1.7976931348623157e308, -1.7976931348623157e308])
def test_one_extreme_row_does_not_blind_the_detector(kind: str, value: float) -> None:
    rng = np.random.default_rng(0)
    detector = make_detector(kind, ert=2000, window=100, seed=0, n_simulated=20_000)
    detector.fit(rng.normal(size=(2000, 3)), ["a", "b", "c"])
    hostile = np.array([[value, 0.0, 0.0]])
    if detector.update(hostile).drift:
        detector.reset()  # as the monitor does after an alarm (and only then)
    quiet = detector.update(rng.normal(size=(500, 3)))
    assert np.isfinite(quiet.statistic)
    # The state survives a checkpoint of the worker; it must stay usable after one too.
    restored = DriftDetector.from_bytes(detector.to_bytes())
    drifted = restored.update(rng.normal(size=(2000, 3)) + np.array([3.0, 0.0, 0.0]))
    assert np.isfinite(drifted.statistic)
    assert drifted.drift, f"{kind} saw no drift after one row of {value:g}"


def test_an_extreme_row_among_normal_ones_leaves_a_finite_statistic() -> None:
    """Without a reset in between (the monitor resets only after an alarm)."""
    rng = np.random.default_rng(1)
    detector = make_detector("mmd", ert=2000, window=100, seed=0, n_simulated=20_000)
    detector.fit(rng.normal(size=(2000, 3)), ["a", "b", "c"])
    x = rng.normal(size=(300, 3))
    x[10] = 1e39
    detector.update(x)
    assert np.isfinite(detector.update(rng.normal(size=(300, 3))).statistic)
