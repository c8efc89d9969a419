"""FeatureDrift: per-feature streaming goodness-of-fit tests under one calibrated max."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy.stats import chi2

from driftline.detectors._ewma import ewma_charts, lam_for_window, simulated_states
from driftline.detectors._ranks import RankGrid
from driftline.detectors._validation import check_positive_int
from driftline.detectors.base import DriftDetector
from driftline.detectors.exceptions import InvalidInputError

__all__ = ["FeatureDrift"]

_N_KNOTS = 512
_MAX_ORDER = 4
# Each feature's statistic is divided by this quantile of its own no-drift values, so that
# heavy-tailed (e.g. nearly constant) features cannot dominate the max.
_NORMALIZING_QUANTILE = 0.99
_PILOT_EVENTS = 64_000
_CLIP = 4.0


class FeatureDrift(DriftDetector):
    """Neyman smooth tests per feature, combined by a jointly calibrated maximum.

    Each value is turned into its reference mid-rank ``u`` in [0, 1] (from ``512`` reference
    quantiles per feature, so ties of discrete features are handled and the cost does not
    grow with the reference), then into Legendre polynomials ``P_1..P_order`` of ``2u - 1``
    — the components of Cramér-von Mises and Anderson-Darling type statistics (location, scale,
    skewness, ...). Whitened per feature and clipped at +-4 (so one rare value cannot raise
    an alarm on its own), their EWMA over an effective ``window`` gives one chi-square-like
    statistic per feature. The alarm statistic is the maximum over features
    of those statistics, each divided by its own 99% no-drift quantile; its threshold is
    calibrated jointly by resampling whole reference rows, so correlated features are
    accounted for (no independence or Bonferroni assumption). ``features`` are the
    normalized per-feature statistics at the alarm row.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> det = FeatureDrift(ert=10_000, window=100).fit(rng.normal(size=(2000, 3)),
        ...                                              feature_names=["a", "b", "c"])
        >>> det.update(rng.normal(size=(300, 3))).drift
        False
        >>> res = det.update(rng.normal(size=(300, 3)) * np.array([1.0, 3.0, 1.0]))
        >>> res.drift, res.features[0][0]
        (True, 'b')
    """

    _fitted_arrays: ClassVar[tuple[str, ...]] = ("_knots", "_basis_mean", "_white", "_norm")
    _hold_out: ClassVar[bool] = False

    def __init__(
        self,
        ert: int = 10_000,
        window: int = 500,
        order: int = 3,
        seed: int = 0,
        n_simulated: int = 1_000_000,
        short_window: int | None = None,
    ) -> None:
        super().__init__(
            ert=ert, window=window, seed=seed, n_simulated=n_simulated, short_window=short_window
        )
        self.order = order
        # the centered feature map of every slot and rank sum, and the `_center` it was
        # built with (`_build_table`; one tuple, so that threads see all three or none)
        self._table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _check_params(self) -> None:
        super()._check_params()
        check_positive_int("order", self.order, "Legendre components per feature")
        if self.order > _MAX_ORDER:
            raise InvalidInputError(
                f"order must be between 1 and {_MAX_ORDER}, got {self.order}; higher "
                "components are too noisy in a streaming window"
            )

    def _fit_map(self, x: np.ndarray, rng: np.random.Generator) -> None:
        self._knots = np.quantile(x, np.linspace(0.0, 1.0, _N_KNOTS), axis=0).T.copy()
        self._grid = RankGrid(self._knots)
        self._table = None
        basis = self._basis(x).astype(np.float64)
        self._basis_mean = basis.mean(axis=0)
        centered = basis - self._basis_mean
        k, d = basis.shape[1], basis.shape[2]
        white = np.zeros((d, k, k))
        for j in range(d):
            cov = np.atleast_2d(np.cov(centered[:, :, j], rowvar=False))
            vals, vecs = np.linalg.eigh(cov)
            # Floor relative to a fully spread feature (Var P_1 = 1/3 for uniform ranks) so a
            # constant reference feature is sensitive to change but not infinitely so.
            vals = np.maximum(vals, 1e-3 * max(float(vals.max()), 1.0 / 3.0))
            white[j] = (vecs / np.sqrt(vals)) @ vecs.T
        self._white = white.astype(np.float32)
        self._norm = np.ones(d)

    def _basis(self, x: np.ndarray) -> np.ndarray:
        """Legendre components of each value's reference mid-rank, shape ``(n, order, d)``.

        Component-major, so each component of all features is one contiguous slice of the
        feature map (``_per_feature`` then sums a few contiguous blocks).
        """
        return np.stack(self._components(x), axis=1)

    def _components(self, x: np.ndarray) -> list[np.ndarray]:
        """``P_1..P_order`` of ``2u - 1``, each ``(n, d)`` float32.

        ``u = (left + right) / (2 * knots)`` is exact in float32 (a sum of at most twice the
        knots times a power of two), so this equals the float64 computation bit for bit;
        only the ``order`` components asked for are computed.
        """
        scale = 1.0 / (2.0 * self._knots.shape[1])
        if math.frexp(scale)[0] == 0.5:  # a power of two: the float32 product is exact
            u = self._grid.rank_sums(x)
        else:
            lo, hi = self._grid.insertion_points(x)
            u = lo + hi
        return self._polynomials(u)

    def _polynomials(self, sums: np.ndarray) -> list[np.ndarray]:
        """The components from ``left + right`` (float32 when the scale is a power of two)."""
        scale = 1.0 / (2.0 * self._knots.shape[1])
        if math.frexp(scale)[0] == 0.5:
            u = sums.astype(np.float32)
            u *= np.float32(scale)
        else:
            u = (sums * scale).astype(np.float32)
        t = 2.0 * u - 1.0
        order = int(self.order)
        if order == 1:
            return [t]
        t2 = t * t
        polys = [t, 1.5 * t2 - 0.5]
        if order >= 3:
            polys.append((2.5 * t2 - 1.5) * t)
        if order >= 4:
            polys.append((35.0 * t2 * t2 - 30.0 * t2 + 3.0) / 8.0)
        return polys

    def _raw_features(self, x: np.ndarray) -> np.ndarray:
        """The feature map before centering, computed step by step (``_feature_map`` reads
        the same values from a table)."""
        return self._whitened(self._components(x))

    def _whitened(self, centered: list[np.ndarray]) -> np.ndarray:
        mean = self._basis_mean.astype(np.float32)
        for b, component in enumerate(centered):
            component -= mean[b]
        # Each feature whitened by its own k x k matrix, as k^2 vector products over all
        # features at once: a batched matmul of tiny matrices is many times slower.
        k = len(centered)
        n = len(centered[0])
        white = np.empty((n, k, centered[0].shape[1]), dtype=np.float32)
        for a in range(k):
            col = white[:, a, :]
            np.multiply(centered[0], self._white[:, 0, a], out=col)
            for b in range(1, k):
                col += centered[b] * self._white[:, b, a]
        # One rare value (e.g. a pixel almost never lit in the reference) must not decide
        # alone: clipping bounds a single event's push, persistent shifts still add up.
        np.clip(white, -_CLIP, _CLIP, out=white)
        return white.reshape(n, -1)

    def _feature_map(self, x: np.ndarray) -> np.ndarray:
        """Centered features of rows, read from a table.

        A feature's ``order`` centered map values depend only on its value's rank sum
        ``left + right`` (one of ``2 * knots + 1`` integers), so they are computed once per
        possible sum, with the very operations of ``_raw_features(x) - _center``, and each
        batch only looks them up (by `RankGrid.slots`): the same float32 values bit for bit.
        """
        table = self._table
        if table is None or table[2] is not self._center:
            table = self._table = self._build_table()
        by_slot, by_sum, _ = table
        slot, hard = self._grid.slots(x)
        k, d = self._white.shape[1], self._white.shape[0]
        # one gather of each value's k components (stored together, padded to a power of
        # two bytes), then into the component-major layout
        rows_k = np.take(by_slot, slot).view(np.float32).reshape(len(x), d, -1)
        if k == 1:
            z = rows_k.reshape(len(x), d)
        else:
            z = np.empty((len(x), k, d), dtype=np.float32)
            np.copyto(z, rows_k[:, :, :k].transpose(0, 2, 1))
        if hard is not None:
            rows, cols, sums = hard
            z.reshape(len(x), k, d)[rows, :, cols] = by_sum[:, cols * self._grid.width + sums].T
        return z.reshape(len(x), k * d)

    def _build_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The map of every slot (`RankGrid.slots`), ``by_slot[slot]`` holding the ``k``
        components together; of every rank sum ``s`` of feature ``j``,
        ``by_sum[c, j * width + s]`` (``width = 2 * knots + 1``); both centered on the
        returned ``_center``."""
        d, k = self._white.shape[0], self._white.shape[1]
        width = self._grid.width
        sums = np.repeat(np.arange(width)[:, None], d, axis=1)
        if math.frexp(1.0 / (2.0 * self._knots.shape[1]))[0] == 0.5:
            sums = sums.astype(np.float32)  # as `rank_sums` returns them
        z = self._whitened(self._polynomials(sums))
        z -= self._center
        by_sum = np.ascontiguousarray(z.reshape(width, k, d).transpose(1, 2, 0)).reshape(k, -1)
        slot_sums = self._grid.slot_sums()
        n_slots = len(slot_sums)
        feature = np.repeat(np.arange(d), n_slots // d)
        padded = 1 if k == 1 else 2 if k == 2 else 4
        by_slot = np.zeros((n_slots, padded), dtype=np.float32)
        by_slot[:, :k] = by_sum[:, feature * width + slot_sums].T
        # items of 4, 8 or 16 bytes, copied as they are
        return by_slot.view(np.dtype((np.void, 4 * padded))).ravel(), by_sum, self._center

    def _after_restore(self) -> None:
        self._table = None
        if self._fitted:
            self._grid = RankGrid(self._knots)

    def _map_dim(self) -> int:
        return int(self._white.shape[0] * self._white.shape[1])

    def _per_feature(self, m: np.ndarray) -> np.ndarray:
        k, d = self._white.shape[1], self._white.shape[0]
        # Component-major layout: a sum of k contiguous blocks of d columns.
        sq = m * m
        if k == 1:
            total = sq
        else:
            total = sq[..., :d] + sq[..., d : 2 * d]
            for c in range(2, k):
                total += sq[..., c * d : (c + 1) * d]
        total *= (2.0 - self.lam) / self.lam
        return np.asarray(total)

    def _chart_stats(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        # The base class's values (per chart: the statistic times its window factor over its
        # own threshold; the larger of the two), with both charts in one pass each.
        windows = self.windows
        states = [self._state, self._state_short][: len(windows)]
        charts = ewma_charts(z, states, [lam_for_window(w) for w in windows])
        scaled = (self._per_feature(charts) / self._norm).max(axis=-1)
        if len(windows) == 1:
            return charts[0], None, scaled[0]
        joint = []
        for k, w in enumerate(windows):
            lam = lam_for_window(w)
            factor = ((2.0 - lam) / lam) / ((2.0 - self.lam) / self.lam)
            joint.append(scaled[k] * factor / self._scale_norm[k])
        return charts[0], charts[1], np.maximum(joint[0], joint[1])

    def _prepare_statistic(self, z_hold: np.ndarray, rng: np.random.Generator) -> None:
        # A short pilot run gives each feature's own no-drift scale (stationary part only).
        n_runs = 16
        length = max(_PILOT_EVENTS // n_runs, 4 * self.window)
        chunks = list(simulated_states(z_hold, self.lam, n_runs, length, rng, len(z_hold)))
        m = np.concatenate(chunks)[min(2 * self.window, length - 1) :]
        stats = self._per_feature(m)
        q = np.quantile(stats.reshape(-1, stats.shape[-1]), _NORMALIZING_QUANTILE, axis=0)
        # A feature constant in the reference has no no-drift spread at all; give it a
        # quarter of the chi-square scale so one odd value cannot trigger an alarm alone.
        floor = 0.25 * float(chi2.ppf(_NORMALIZING_QUANTILE, self._white.shape[1]))
        self._norm = np.maximum(q, floor)

    def _statistic(self, m: np.ndarray) -> np.ndarray:
        return np.asarray((self._per_feature(m) / self._norm).max(axis=-1))

    def _attribution(self, x: np.ndarray, m: np.ndarray, row: int) -> np.ndarray:
        return np.asarray(self._per_feature(m[row]) / self._norm)
