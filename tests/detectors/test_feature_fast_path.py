"""FeatureDrift's table-driven update path against the step-by-step computation it replaces.

The fast path (`RankGrid.slots`, the feature-map tables, `ewma_charts`, both charts'
statistics in one pass) must give the same float values bit for bit: the retraining policy
downstream is sensitive to the exact alarm rows. The reference below is the previous update
path, kept as code: ranks by `rank_sums`, polynomials, whitening and clipping computed per
batch, one `ewma` per chart and the base class's concatenated joint statistic.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from driftline.detectors import DriftDetector, FeatureDrift
from driftline.detectors._ewma import ewma, ewma_charts
from driftline.detectors._ranks import RankGrid
from driftline.detectors._threads import single_blas_thread


class _StepByStepFeatureDrift(FeatureDrift):
    """FeatureDrift with the update path as it was before the lookup tables."""

    def _feature_map(self, x: np.ndarray) -> np.ndarray:
        z = self._raw_features(x)
        z -= self._center
        return z

    def _per_feature(self, m: np.ndarray) -> np.ndarray:
        k, d = self._white.shape[1], self._white.shape[0]
        sq = m * m
        total = sq[..., :d].copy()
        for c in range(1, k):
            total += sq[..., c * d : (c + 1) * d]
        return np.asarray(total * ((2.0 - self.lam) / self.lam))

    def _chart_stats(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return DriftDetector._chart_stats(self, z)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _reference(rng: np.random.Generator, d: int, discrete: bool) -> np.ndarray:
    x = rng.normal(size=(3000, d))
    if discrete:
        x[:, 0] = np.round(x[:, 0] * 2)  # heavy ties
        if d > 2:
            x[:, 2] = 1.5  # constant
    return x


def _stream(rng: np.random.Generator, d: int, discrete: bool) -> np.ndarray:
    x = rng.normal(size=(9000, d))
    x[3000:6000, d - 1] += 0.5  # a shift, then a scale change
    x[6000:, 1 % d] *= 1.6
    if discrete:
        x[:, 0] = np.round(x[:, 0] * 2)
        if d > 2:
            x[::7, 2] = 1.5
            x[1::7, 2] = 1.4
    x[5] = 1e6  # far above every knot
    x[6] = -1e6
    return x


CONFIGS = [
    # d, window, short_window, order, batch, discrete
    (32, 500, None, 3, 1000, False),
    (8, 200, None, 1, 333, True),
    (5, 100, 0, 4, 1, True),
    (12, 300, 30, 2, 777, False),
    (3, 400, None, 3, 64, True),
    (20, 50, None, 3, 2000, False),
    (1, 160, None, 2, 31, False),
]


@pytest.mark.parametrize(
    ("d", "window", "short_window", "order", "batch", "discrete"),
    CONFIGS,
    ids=[f"d{c[0]}-w{c[1]}-s{c[2]}-o{c[3]}-b{c[4]}{'-ties' if c[5] else ''}" for c in CONFIGS],
)
def test_update_path_matches_step_by_step(
    d: int, window: int, short_window: int | None, order: int, batch: int, discrete: bool
) -> None:
    rng = np.random.default_rng(d * 1000 + batch)
    ref, stream = _reference(rng, d, discrete), _stream(rng, d, discrete)
    params: dict[str, Any] = dict(
        ert=1000, window=window, short_window=short_window, order=order, n_simulated=50_000
    )
    fast = FeatureDrift(seed=d, **params).fit(ref)
    slow = _StepByStepFeatureDrift(seed=d, **params).fit(ref)
    assert fast.threshold == slow.threshold
    assert _bits(fast._norm) == _bits(slow._norm)
    assert _bits(fast._center) == _bits(slow._center)
    assert _bits(fast._feature_map(stream[:500])) == _bits(slow._feature_map(stream[:500]))
    alarms = 0
    for i in range(0, len(stream), batch):
        got, want = fast.update(stream[i : i + batch]), slow.update(stream[i : i + batch])
        assert (got.drift, got.index, got.statistic) == (want.drift, want.index, want.statistic)
        assert got.features == want.features
        assert _bits(fast._state) == _bits(slow._state)
        assert _bits(fast._state_short) == _bits(slow._state_short)
        if got.drift:
            alarms += 1
            fast.reset()
            slow.reset()
        if i // batch == 3:  # a round trip through bytes mid-stream changes nothing
            fast = DriftDetector.from_bytes(fast.to_bytes())
    assert alarms > 0  # the drift is seen, so alarm rows were compared too


@pytest.mark.parametrize("cells", [4, 16, 4096])
@pytest.mark.parametrize("discrete", [False, True])
def test_slots_give_exact_insertion_points(cells: int, discrete: bool) -> None:
    rng = np.random.default_rng(cells)
    d, n_knots = 6, 64
    ref = rng.normal(size=(500, d))
    if discrete:
        ref = np.round(ref * 2) / 2
        ref[:, 1] = 3.0
    knots = np.quantile(ref, np.linspace(0.0, 1.0, n_knots), axis=0).T.copy()
    x = rng.normal(size=(2000, d)) * 1.5
    if discrete:
        x = np.round(x * 2) / 2
    x[:n_knots] = knots.T  # every knot itself
    x[n_knots] = 1e300
    x[n_knots + 1] = -1e300
    grid = RankGrid(knots, cells=cells)
    slot, hard = grid.slots(x)
    sums = grid.slot_sums()[slot]
    if hard is not None:
        rows, cols, hard_sums = hard
        sums[rows, cols] = hard_sums
    if cells == 4:
        assert hard is not None  # the exact fallback was exercised
    want = np.stack(
        [
            np.searchsorted(knots[j], x[:, j], side="left")
            + np.searchsorted(knots[j], x[:, j], side="right")
            for j in range(d)
        ],
        axis=1,
    )
    assert np.array_equal(sums, want)
    assert np.array_equal(grid.rank_sums(x), want)


@pytest.mark.parametrize("cells", [8, 64])
def test_feature_map_tables_with_many_two_knot_cells(cells: int) -> None:
    rng = np.random.default_rng(cells)
    ref = rng.normal(size=(2000, 4))
    ref[:, 0] = np.round(ref[:, 0] * 3)
    det = FeatureDrift(ert=1000, n_simulated=20_000).fit(ref)
    # Coarse cells: many hold two or more distinct knots, so values take the exact fallback.
    det._grid = RankGrid(det._knots, cells=cells)
    det._table = None
    x = rng.normal(size=(1500, 4)) * 2
    x[:, 0] = np.round(x[:, 0] * 3)
    assert det._grid.slots(x)[1] is not None
    want = det._raw_features(x) - det._center
    assert _bits(det._feature_map(x)) == _bits(want)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 1024])
@pytest.mark.parametrize("state_dtype", [np.float64, np.float32])
def test_ewma_charts_equal_one_ewma_per_chart(n: int, state_dtype: type) -> None:
    rng = np.random.default_rng(n)
    z = rng.normal(size=(n, 10)).astype(np.float32)
    lams = [2.0 / 501.0, 2.0 / 63.0, 0.5]
    states: list[np.ndarray] = [rng.normal(size=10).astype(state_dtype) for _ in lams]
    got = ewma_charts(z, states, lams)
    assert got.shape == (len(lams), n, 10)
    for c, (lam, m0) in enumerate(zip(lams, states, strict=True)):
        want = ewma(z, m0, lam)
        assert want.dtype == got.dtype
        assert _bits(got[c]) == _bits(want)


def _blas_threads() -> list[int]:
    return [int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"]


def test_single_blas_thread_nests_and_restores() -> None:
    before = _blas_threads()
    with single_blas_thread():
        inside = _blas_threads()
        with single_blas_thread():
            assert _blas_threads() == inside
        assert _blas_threads() == inside  # the inner block did not restore early
    assert _blas_threads() == before
    seen: list[list[int]] = []

    def other() -> None:  # another thread's block is its own outermost one
        with single_blas_thread():
            seen.append(_blas_threads())

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen and _blas_threads() == before
