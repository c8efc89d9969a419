"""OOD scorer: calibrated flag rate, far events flagged, state round trip."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors import InvalidInputError, NotFittedError, OODScorer


def test_flag_rate_on_fresh_reference_data_matches_quantile() -> None:
    rng = np.random.default_rng(0)
    scorer = OODScorer(k=128, seed=0, quantile=0.99).fit(rng.normal(size=(6000, 3)))
    fresh = scorer.flags(rng.normal(size=(20_000, 3)))
    assert 0.002 < fresh.mean() < 0.03
    far = scorer.score(np.array([[6.0, 6.0, 6.0]]))
    assert far[0] > 2 * scorer.threshold


def test_scores_are_relative_to_the_covering_radius() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(1000, 2))
    scorer = OODScorer(k=50).fit(ref)
    assert scorer.score(ref).max() <= (scorer.threshold + 1) * 2
    assert scorer.flags(ref[:10], threshold=np.inf).sum() == 0
    assert scorer.score(ref[0]).shape == (1,)


def test_round_trip_and_params() -> None:
    rng = np.random.default_rng(2)
    scorer = OODScorer(k=16, seed=4).fit(rng.normal(size=(500, 4)), feature_names=list("abcd"))
    copy = OODScorer.from_bytes(scorer.to_bytes())
    batch = rng.normal(size=(50, 4)) * 2
    np.testing.assert_array_equal(copy.score(batch), scorer.score(batch))
    assert copy.threshold == scorer.threshold and copy.feature_names == ("a", "b", "c", "d")
    assert OODScorer(**scorer.get_params()).get_params() == scorer.get_params()
    with pytest.raises(NotFittedError):
        OODScorer.from_bytes(OODScorer().to_bytes()).score(batch)


def test_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match=r"quantile must be in \(0, 1\).*got 1.5"):
        OODScorer(quantile=1.5).fit(np.zeros((50, 2)))
    with pytest.raises(InvalidInputError, match="reference has 3 rows"):
        OODScorer().fit(np.zeros((3, 2)))
    scorer = OODScorer(k=4).fit(np.random.default_rng(0).normal(size=(40, 2)))
    with pytest.raises(InvalidInputError, match="3 features but 2 were expected"):
        scorer.score(np.zeros((1, 3)))
