"""Dataset similarity from core sets, against the full-data MMD."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from driftline.detectors import Coreset, InvalidInputError, exact_mmd2, mmd2, similarity


def _naive_mmd2(x: np.ndarray, y: np.ndarray, bw: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return float(np.exp(-d2 / (2 * bw**2)).mean())

    return k(x, x) + k(y, y) - 2 * k(x, y)


def test_exact_mmd2_blocks_match_the_definition() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2300, 2)), rng.normal(0.3, 1.0, size=(900, 2))
    assert exact_mmd2(x, y, 1.5) == pytest.approx(_naive_mmd2(x, y, 1.5), rel=1e-4)
    assert exact_mmd2(x, x, 1.5) == pytest.approx(0.0, abs=1e-6)
    assert exact_mmd2(x, y) == exact_mmd2(x, y)  # median heuristic is deterministic


def test_similarity_is_one_for_identical_and_symmetric() -> None:
    rng = np.random.default_rng(1)
    a = Coreset.from_array(rng.normal(size=(3000, 5)), k=64)
    b = Coreset.from_array(rng.normal(0.5, 1.0, size=(3000, 5)), k=64)
    assert similarity(a, a) == 1.0
    assert similarity(a, b) == pytest.approx(similarity(b, a))
    assert 0.0 < similarity(a, b) < 1.0
    assert mmd2(a, b) > 0.0


def _digit_stream(classes: list[int], n: int, rng: np.random.Generator) -> np.ndarray:
    x, y = load_digits(return_X_y=True)
    pool = np.flatnonzero(np.isin(y, classes))
    return x[rng.choice(pool, n)] + rng.normal(0, 0.5, size=(n, 64))


def test_recurring_concept_a_b_a_returns_to_a() -> None:
    """Stream A -> B -> A: the return to A must be found most similar to A's version."""
    rng = np.random.default_rng(2)
    segments = {
        "A": _digit_stream([0, 1, 2, 3, 4], 4000, rng),
        "B": _digit_stream([5, 6, 7, 8, 9], 4000, rng),
        "A again": _digit_stream([0, 1, 2, 3, 4], 4000, rng),
    }
    sketches = {}
    for name, data in segments.items():
        cs = Coreset(k=128, seed=0)
        for i in range(0, len(data), 500):  # arrives as a stream
            cs.update(data[i : i + 500])
        sketches[name] = cs
    new = sketches["A again"]
    ranked = sorted(["A", "B"], key=lambda v: -similarity(new, sketches[v]))
    assert ranked == ["A", "B"]
    assert similarity(new, sketches["A"]) > 2 * similarity(new, sketches["B"])


def test_coreset_ranking_agrees_with_exact_mmd() -> None:
    rng = np.random.default_rng(3)
    query = rng.normal(size=(1500, 8))
    shifts = [0.0, 0.15, 0.3, 0.5, 0.8, 1.2]
    cands = [rng.normal(size=(1500, 8)) + s * np.eye(8)[i % 8] * 3 for i, s in enumerate(shifts)]
    bw = 4.0
    exact = [exact_mmd2(query, c, bw) for c in cands]
    qc = Coreset.from_array(query, k=128)
    approx = [mmd2(qc, Coreset.from_array(c, k=128), bw) for c in cands]
    assert int(np.argmin(approx)) == int(np.argmin(exact)) == 0
    assert np.corrcoef(exact, approx)[0, 1] > 0.99


def test_bad_inputs_name_the_value() -> None:
    a = Coreset.from_array(np.zeros((5, 2)) + np.arange(5)[:, None], k=4)
    with pytest.raises(InvalidInputError, match=r"bandwidth must be .*got -1"):
        mmd2(a, a, -1.0)
    with pytest.raises(InvalidInputError, match="core set b is empty"):
        mmd2(a, Coreset())
    with pytest.raises(InvalidInputError, match="2 and 3 features"):
        mmd2(a, Coreset.from_array(np.ones((4, 3))))
    with pytest.raises(InvalidInputError, match="must be a Coreset"):
        similarity(a, np.zeros((3, 2)))  # type: ignore[arg-type]


def test_bandwidth_median_matches_a_full_sort() -> None:
    from driftline.detectors._kernels import _weighted_median

    rng = np.random.default_rng(4)
    for trial in range(100):
        n = int(rng.integers(1, 400))
        values = rng.exponential(size=n)
        if trial % 3 == 0:
            values = np.round(values, 1)  # ties across histogram bins
        weights = rng.random(n)
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(weights[order])
        expected = values[order][np.searchsorted(cum, cum[-1] / 2)]
        assert _weighted_median(values, weights) == expected
