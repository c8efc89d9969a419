"""Core set: bounded memory, exact weights, valid covering radius, merges, bytes."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors import Coreset, InvalidInputError


def _nearest(x: np.ndarray, pts: np.ndarray) -> np.ndarray:
    d2 = (x**2).sum(1)[:, None] - 2 * x @ pts.T + (pts**2).sum(1)[None, :]
    return np.sqrt(np.maximum(d2, 0).min(axis=1))


def test_memory_is_bounded_and_weights_count_every_row() -> None:
    rng = np.random.default_rng(0)
    cs = Coreset(k=32, seed=1)
    for _ in range(100):
        cs.update(rng.normal(size=(1000, 3)))
        assert cs.points.shape[0] <= 32
    assert cs.n_seen == 100_000
    assert cs.weights.sum() == pytest.approx(100_000)
    assert cs.dim == 3
    assert len(cs.to_bytes()) < 8 * 32 * 6 + 2000


def test_covering_radius_holds_for_every_row_seen() -> None:
    rng = np.random.default_rng(1)
    data = np.concatenate([rng.normal(size=(4000, 2)), rng.normal(6.0, 0.3, size=(40, 2))])
    rng.shuffle(data)
    cs = Coreset(k=24, seed=0)
    for i in range(0, len(data), 333):
        cs.update(data[i : i + 333])
    dist = _nearest(data, cs.points)
    assert dist.max() <= cs.radius + 1e-9
    assert cs.radius < 4.0  # a useful cover, not the diameter of the data (~10)


def test_core_set_mean_is_the_stream_mean() -> None:
    rng = np.random.default_rng(2)
    data = rng.exponential(size=(5000, 4))
    cs = Coreset.from_array(data, k=16)
    weighted = (cs.points * cs.weights[:, None]).sum(0) / cs.weights.sum()
    np.testing.assert_allclose(weighted, data.mean(0), rtol=1e-9)


def test_merge_summarizes_both_streams() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3000, 3)), rng.normal(4.0, 1.0, size=(2000, 3))
    a, b = Coreset.from_array(x, k=20), Coreset.from_array(y, k=20)
    merged = a.merge(b)
    assert merged is not a and merged.n_seen == 5000
    assert merged.points.shape[0] <= 20
    assert merged.weights.sum() == pytest.approx(5000)
    both = np.concatenate([x, y])
    assert _nearest(both, merged.points).max() <= merged.radius + 1e-9
    weighted = (merged.points * merged.weights[:, None]).sum(0) / 5000
    np.testing.assert_allclose(weighted, both.mean(0), rtol=1e-9)
    assert a.n_seen == 3000  # inputs untouched
    assert Coreset(k=5).merge(a).n_seen == 3000


def test_bytes_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(4)
    cs = Coreset(k=16, seed=9).update(rng.normal(size=(700, 5)))
    copy = Coreset.from_bytes(cs.to_bytes())
    np.testing.assert_array_equal(copy.points, cs.points)
    np.testing.assert_array_equal(copy.weights, cs.weights)
    assert (copy.radius, copy.n_seen, copy.k, copy.seed) == (cs.radius, 700, 16, 9)
    more = rng.normal(size=(300, 5))
    np.testing.assert_array_equal(copy.update(more).points, cs.update(more).points)
    empty = Coreset.from_bytes(Coreset(k=3).to_bytes())
    assert empty.n_seen == 0 and empty.dim is None and empty.points.shape == (0, 0)


def test_same_seed_and_order_give_the_same_core_set() -> None:
    x = np.random.default_rng(5).normal(size=(2000, 3))
    a, b = Coreset.from_array(x, k=10, seed=3), Coreset.from_array(x, k=10, seed=3)
    np.testing.assert_array_equal(a.points, b.points)


def test_single_row_and_duplicates() -> None:
    cs = Coreset(k=4).update(np.array([1.0, 2.0]))
    assert cs.n_seen == 1 and cs.radius == 0.0
    cs.update(np.ones((50, 2)))
    assert cs.points.shape[0] <= 4 and cs.weights.sum() == pytest.approx(51)


def test_invalid_input_names_the_value() -> None:
    with pytest.raises(InvalidInputError, match=r"k must be an integer >= 1.*got 0"):
        Coreset(k=0)
    cs = Coreset(k=4).update(np.zeros((3, 2)))
    with pytest.raises(InvalidInputError, match="3 features but 2 were expected"):
        cs.update(np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        cs.update(np.array([[0.0, np.nan]]))
    with pytest.raises(InvalidInputError, match="2 and 3 features"):
        cs.merge(Coreset().update(np.zeros((2, 3))))
    with pytest.raises(InvalidInputError, match="not a Coreset"):
        Coreset.from_bytes(Coreset().to_bytes().replace(b'"Coreset"', b'"Other!!"'))
