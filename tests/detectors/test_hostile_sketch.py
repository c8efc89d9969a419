"""After one extreme value the core set sketch and the MMD attribution stay finite and useful.

The MMD statistic was already clipped; on main the attribution state (``x**2`` of 1e300 is
inf) went NaN, 1e39 pinned the attribution on one feature, and the core set (which feeds
similarity search and coreset selection) overflowed ``|x|^2``: NaN distances, a median
bandwidth that raised, NaN similarities.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors import Coreset, DriftDetector, make_detector
from driftline.detectors.similarity import similarity

VALUES = [1e39, 1e300, -1.7976931348623157e308]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("seed", range(4))
def test_the_sketch_stays_finite_and_comparable(value: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, 3))
    x[rng.integers(2000), 0] = value
    sketch = Coreset(k=32, seed=seed).update(x)
    sketch.update(rng.normal(size=(2000, 3)))
    assert np.isfinite(sketch.points).all() and np.isfinite(sketch.radius)
    assert float(sketch.weights.sum()) == 4000
    same = Coreset(k=32).update(rng.normal(size=(4000, 3)))
    shifted = Coreset(k=32).update(rng.normal(size=(4000, 3)) + 3.0)
    near, far = similarity(sketch, same), similarity(sketch, shifted)
    assert np.isfinite(near) and np.isfinite(far) and near > far
    restored = Coreset.from_bytes(sketch.merge(same).to_bytes())
    assert np.isfinite(restored.points).all()


@pytest.mark.parametrize("value", VALUES)
def test_the_attribution_recovers_and_names_the_drifted_feature(value: float) -> None:
    rng = np.random.default_rng(0)
    detector = make_detector("mmd", ert=2000, window=100, seed=0, n_simulated=20_000)
    detector.fit(rng.normal(size=(2000, 3)), ["a", "b", "c"])
    hostile = rng.normal(size=(300, 3))
    hostile[10, 0] = value
    detector.update(hostile)
    detector.update(rng.normal(size=(1000, 3)))
    restored = DriftDetector.from_bytes(detector.to_bytes())
    drifted = rng.normal(size=(2000, 3)) + np.array([0.0, 3.0, 0.0])
    result = restored.update(drifted)
    assert result.drift
    scores = dict(result.features)
    assert all(np.isfinite(s) for s in scores.values()), scores
    assert max(scores, key=scores.__getitem__) == "b", scores
