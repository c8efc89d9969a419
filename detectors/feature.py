"""FeatureDrift: per-feature streaming goodness-of-fit tests under one calibrated max."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy.stats import chi2

from driftline.detectors._ewma import simulated_states
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
            u *= np.float32(scale)
        else:
            lo, hi = self._grid.insertion_points(x)
            u = ((lo + hi) * scale).astype(np.float32)
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
        mean = self._basis_mean.astype(np.float32)
        centered = self._components(x)
        for b, component in enumerate(centered):
            component -= mean[b]
        # Each feature whitened by its own k x k matrix, as k^2 vector products over all
        # features at once: a batched matmul of tiny matrices is many times slower.
        k = len(centered)
        white = np.empty((len(x), k, centered[0].shape[1]), dtype=np.float32)
        for a in range(k):
            col = white[:, a, :]
            np.multiply(centered[0], self._white[:, 0, a], out=col)
            for b in range(1, k):
                col += centered[b] * self._white[:, b, a]
        # One rare value (e.g. a pixel almost never lit in the reference) must not decide
        # alone: clipping bounds a single event's push, persistent shifts still add up.
        np.clip(white, -_CLIP, _CLIP, out=white)
        return white.reshape(len(x), -1)

    def _feature_map(self, x: np.ndarray) -> np.ndarray:
        z = self._raw_features(x)
        z -= self._center  # in place: the same values as the base class's new array
        return z

    def _after_restore(self) -> None:
        if self._fitted:
            self._grid = RankGrid(self._knots)

    def _map_dim(self) -> int:
        return int(self._white.shape[0] * self._white.shape[1])

    def _per_feature(self, m: np.ndarray) -> np.ndarray:
        k, d = self._white.shape[1], self._white.shape[0]
        # Component-major layout: a sum of k contiguous blocks of d columns.
        sq = m * m
        total = sq[..., :d].copy()
        for c in range(1, k):
            total += sq[..., c * d : (c + 1) * d]
        return np.asarray(total * ((2.0 - self.lam) / self.lam))

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
