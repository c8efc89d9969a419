from __future__ import annotations

import numpy as np
import pytest

from driftline.streams.evaluation.scenarios import KINDS, inject


def data(n: int = 4000, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("kind", KINDS)
def test_rows_before_start_are_untouched_and_after_changed(kind: str) -> None:
    x = data()
    magnitude = 0.9 if kind in ("correlation", "subpopulation") else 1.0
    out = inject(x, kind, 2000, magnitude, seed=1)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[:2000], x[:2000])
    assert not np.array_equal(out[2000:], x[2000:])
    np.testing.assert_array_equal(x, data())  # the input is not modified


def test_shift_scale_and_noise_have_the_asked_size() -> None:
    x = data(20_000)
    std = x[:10_000, 0].std()
    shifted = inject(x, "shift", 10_000, 2.0, features=[0])
    assert shifted[10_000:, 0].mean() - x[10_000:, 0].mean() == pytest.approx(2.0 * std)
    scaled = inject(x, "scale", 10_000, 1.0, features=[1])
    assert scaled[10_000:, 1].std() == pytest.approx(2.0 * x[10_000:, 1].std(), rel=0.02)
    noisy = inject(x, "noise", 10_000, 1.0, features=[2])
    assert noisy[10_000:, 2].std() == pytest.approx(np.sqrt(2.0), rel=0.05)
    np.testing.assert_array_equal(shifted[:, 1:], x[:, 1:])


def test_correlation_changes_only_the_dependence() -> None:
    x = data(20_000)
    out = inject(x, "correlation", 10_000, 0.8, features=[0, 1])
    after = out[10_000:]
    assert np.corrcoef(after[:, 0], after[:, 1])[0, 1] == pytest.approx(0.8, abs=0.05)
    for j in range(4):  # every feature keeps exactly its values
        np.testing.assert_array_equal(np.sort(after[:, j]), np.sort(x[10_000:, j]))


def test_subpopulation_moves_labels_with_rows() -> None:
    x = data(20_000)
    y = np.arange(20_000)
    out, labels = inject(x, "subpopulation", 10_000, 0.9, y=y)
    assert (out[10_000:, 0] > np.median(x[:10_000, 0])).mean() == pytest.approx(0.9, abs=0.01)
    np.testing.assert_array_equal(out, x[labels])
    np.testing.assert_array_equal(labels[:10_000], y[:10_000])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("warp", 10, 1.0), "unknown drift kind"),
        (("shift", 0, 1.0), "start=0"),
        (("shift", 100, 1.0), "start=100"),
        (("correlation", 10, 1.5), r"\[-1, 1\]"),
        (("subpopulation", 10, 2.0), "fraction"),
    ],
)
def test_bad_arguments_say_what_to_do(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        inject(data(100), *args)
    with pytest.raises(ValueError, match="column indices"):
        inject(data(100), "shift", 10, 1.0, features=[7])
