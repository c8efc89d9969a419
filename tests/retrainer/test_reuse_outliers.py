"""Label-free reuse against extreme rows: one value must not decide which past model returns."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.retrainer.reuse import match_test


@pytest.mark.parametrize("value", [1e12, 1e100, 1e300])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_extreme_row_in_a_past_data_version_does_not_make_it_match_every_window(
    value: float, seed: int
) -> None:
    """On main one row of 1e12 among 800 widened the candidate's spread until every window
    standardized onto its bulk: a window of another concept (3 sd away in that feature)
    "matched" with p = 1.0, so that past model would be redeployed for any change."""
    rng = np.random.default_rng(seed)
    past = rng.normal(size=(800, 3))
    past[5, 1] = value
    other = rng.normal(size=(400, 3))
    other[:, 1] += 3.0  # the concept changed in the feature that holds the outlier
    test = match_test(other, past, alpha=0.05)
    assert not test.matches, test
    assert np.isfinite(test.statistic)
    # A true recurrence of that concept still matches, the outlier notwithstanding.
    assert match_test(rng.normal(size=(150, 3)), past, alpha=0.05, seed=seed).matches
