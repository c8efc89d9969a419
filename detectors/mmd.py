"""OnlineMMD: the multivariate default detector (kernel two-sample test on a stream)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from driftline.detectors._ewma import ewma_weights
from driftline.detectors._kernels import median_distance
from driftline.detectors._validation import check_positive_int
from driftline.detectors._whiten import standardize, whitening
from driftline.detectors.base import DriftDetector, _mean_rows
from driftline.detectors.exceptions import InvalidInputError

__all__ = ["OnlineMMD"]

_FAR = 1e6
"""Standardized values are clipped to +-_FAR before the Fourier map (see `_fourier`)."""
_WHITE_FLOOR = 0.1
"""Whitening amplifies no direction of the Fourier features by more than
``_WHITE_FLOOR ** -0.5`` (~3.2x): weak directions are estimated poorly, and giving them full
weight spread the statistic's power over noise (a few-feature mean shift and a subpopulation
shift were caught 1.4-1.5x later with a floor of 0.01)."""


class OnlineMMD(DriftDetector):
    """Streaming MMD test: random Fourier features, EWMA, Hotelling norm, calibrated threshold.

    Each event ``x`` (standardized with the reference's means and scales) is mapped to
    ``n_components`` random Fourier features of a Gaussian kernel (median-heuristic bandwidth
    on the reference unless ``bandwidth`` is given), centered on the reference's mean
    embedding and whitened with the reference covariance of the features. The statistic is
    ``(2 - lam) / lam * |m_t|^2`` with ``m_t`` the exponentially weighted mean of those
    features over an effective ``window`` of recent events: an MMD between the recent window
    and the reference in a whitened kernel feature space. Like the unbiased MMD estimate,
    it leaves out each event's product with itself: ``|m_t|^2`` minus
    ``sum_i w_i^2 |z_i|^2`` (tracked as one more chart column, with weight ``lam^2`` and decay
    ``(1 - lam)^2``), plus that term's reference mean. Its mean without drift is
    ``n_components`` as before, but the noisiest part of ``|m_t|^2`` — the newest events'
    own squared norms, heavy-tailed on real data and dominant in a short window — is gone,
    so the short chart can alarm within a few dozen events. The Gaussian kernel is characteristic,
    so changes of correlation with unchanged marginals are seen too. Cost per event is
    ``O(d * n_components + n_components^2)``, independent of reference size and history.

    ``features`` ranks input columns by the EWMA shift of their standardized mean and
    variance at the alarm row; a correlation-only change can raise the statistic while all
    column scores stay small.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> det = OnlineMMD(ert=10_000, window=100, seed=0).fit(rng.normal(size=(2000, 3)))
        >>> det.update(rng.normal(size=(500, 3))).drift
        False
        >>> shifted = rng.normal(size=(500, 3)) + np.array([2.0, 0.0, 0.0])
        >>> res = det.update(shifted)
        >>> res.drift, res.features[0][0], det.drift_detected
        (True, 'x0', True)
    """

    _fitted_arrays: ClassVar[tuple[str, ...]] = (
        "_mean",
        "_scale",
        "_omega",
        "_phase",
        "_white",
        "_marg_center",
        "_marg_var",
        "_pair_center",
        "_pair_var",
    )
    # mean + second-moment shift of one column: about chi-square with 2 dof
    _score_quantile: ClassVar[float] = 9.210
    _PAIR_QUANTILE: ClassVar[float] = 6.635

    def __init__(
        self,
        ert: int = 10_000,
        window: int = 500,
        n_components: int = 64,
        bandwidth: float | None = None,
        seed: int = 0,
        n_simulated: int = 1_000_000,
        short_window: int | None = None,
    ) -> None:
        super().__init__(
            ert=ert, window=window, seed=seed, n_simulated=n_simulated, short_window=short_window
        )
        self.n_components = n_components
        self.bandwidth = bandwidth
        self._marg = np.zeros(0)

    def _check_params(self) -> None:
        super()._check_params()
        check_positive_int("n_components", self.n_components, "random Fourier features")
        if self.bandwidth is not None and not (np.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise InvalidInputError(
                f"bandwidth must be > 0 (in reference standard deviations) or None for the "
                f"median heuristic, got {self.bandwidth!r}"
            )

    def _fit_map(self, x: np.ndarray, rng: np.random.Generator) -> None:
        self._mean, self._scale = standardize(x)
        xs = (x - self._mean) / self._scale
        bw = self.bandwidth if self.bandwidth is not None else median_distance(xs, rng)
        d, n_comp = x.shape[1], int(self.n_components)
        self._omega = (rng.normal(size=(d, n_comp)) / bw).astype(np.float32)
        self._phase = rng.uniform(0.0, 2.0 * np.pi, n_comp).astype(np.float32)
        raw = self._fourier(x).astype(np.float64)
        self._white = whitening(raw, _WHITE_FLOOR).astype(np.float32)
        sq = xs**2
        self._marg_center = np.concatenate([np.zeros(d), sq.mean(axis=0)])
        var = np.concatenate([xs.var(axis=0), sq.var(axis=0)])
        self._marg_var = np.where(var > 0, var, 1.0)
        self._pair_center = xs.T @ xs / len(xs)
        pvar = (xs**2).T @ (xs**2) / len(xs) - self._pair_center**2
        self._pair_var = np.where(pvar > 1e-12, pvar, 1.0)

    def _fourier(self, x: np.ndarray) -> np.ndarray:
        # Clipped before the float32 cast: a finite value beyond ~3e38 reference deviations
        # (one hostile 1e39) became inf, cos(inf) NaN, and the EWMA NaN for good (no alarm
        # ever again). A million deviations is as far as the kernel can tell apart anyway.
        xs = np.clip((x - self._mean) / self._scale, -_FAR, _FAR).astype(np.float32)
        z = xs @ self._omega
        z += self._phase  # in place: the hot path of every update
        return np.cos(z, out=z)

    def _raw_features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._fourier(x) @ self._white)

    def _feature_map(self, x: np.ndarray) -> np.ndarray:
        """Centered whitened Fourier features, then each row's centered squared norm."""
        n_comp = int(self._omega.shape[1])
        out = np.empty((len(x), n_comp + 1), dtype=np.float32)
        z = out[:, :n_comp]
        np.subtract(self._raw_features(x), self._center[:n_comp], out=z)
        out[:, n_comp] = np.einsum("ij,ij->i", z, z)
        out[:, n_comp] -= self._center[n_comp]
        return out

    def _fit_center(self, x: np.ndarray) -> None:
        # The squared norm is of the *centered* features: center them first.
        n_comp = int(self._omega.shape[1])
        self._center = np.zeros(n_comp + 1, dtype=np.float32)
        self._center[:n_comp] = _mean_rows(self._feature_map, x)[:n_comp]
        self._center[n_comp] = _mean_rows(self._feature_map, x)[n_comp]

    def _map_dim(self) -> int:
        return int(self._omega.shape[1]) + 1

    def _column_recursion(self, lam: float) -> tuple[np.ndarray, np.ndarray]:
        # The last column follows sum_i w_i^2 q_i: weight lam^2, decay (1 - lam)^2.
        gains = np.full(self._map_dim(), lam)
        decays = 1.0 - gains
        gains[-1], decays[-1] = lam * lam, (1.0 - lam) ** 2
        return gains, decays

    def _statistic(self, m: np.ndarray) -> np.ndarray:
        z = m[..., :-1]
        own = np.einsum("...i,...i->...", z, z) - m[..., -1]
        return np.asarray(own * ((2.0 - self.lam) / self.lam))

    def _after_restore(self) -> None:
        if self._fitted and self._center.shape != (self._map_dim(),):
            raise InvalidInputError(
                "bytes hold an OnlineMMD from an older release (a chart without the "
                "squared-norm column); fit a new detector on the reference"
            )

    def _near(self, x: np.ndarray) -> np.ndarray:
        """``x`` held within ``_FAR`` reference deviations, as `_fourier` holds it: one
        hostile 1e300 made ``x**2`` overflow and the attribution state NaN for good (1e39
        pinned it on one feature for tens of thousands of rows)."""
        far = _FAR * self._scale
        return np.clip(x, self._mean - far, self._mean + far)

    # Marginal mean/variance tracker, only for attribution.
    def _marg_after(self, x: np.ndarray, n: int) -> np.ndarray:
        # Weighted sums of x and x^2 give the weighted standardized moments without
        # materializing the standardized batch.
        w = ewma_weights(n, self.lam)
        x = self._near(x[:n])
        sw, s1, s2 = w.sum(), w @ x, w @ (x**2)
        mu, sc = self._mean, self._scale
        first = (s1 - mu * sw) / sc
        second = (s2 - 2.0 * mu * s1 + mu**2 * sw) / sc**2
        fresh = np.concatenate([first, second]) - self._marg_center * sw
        return (1.0 - self.lam) ** n * self._marg + fresh

    def _attribution(self, x: np.ndarray, m: np.ndarray, row: int) -> np.ndarray:
        marg = self._marg_after(x, row + 1)
        z2 = marg**2 / self._marg_var * ((2.0 - self.lam) / self.lam)
        d = self._n_features
        return np.asarray(z2[:d] + z2[d:])

    def _pair_after(self, x: np.ndarray, n: int) -> np.ndarray:
        w = ewma_weights(n, self.lam)
        xs = (self._near(x[:n]) - self._mean) / self._scale
        fresh = (xs * w[:, None]).T @ xs - self._pair_center * w.sum()
        return np.asarray((1.0 - self.lam) ** n * self._pair + fresh)

    def _changes(self, x: np.ndarray, row: int) -> tuple[tuple[str, str, float], ...]:
        """Mean, variance and pairwise-dependence shifts at ``row``, strongest first (top 10).

        The dependence of a pair is the EWMA of its standardized cross product against the
        reference's, so a change of correlation with unchanged marginals names the pair.
        """
        k = (2.0 - self.lam) / self.lam
        d, names = self._n_features, self._feature_names
        marg = self._marg_after(x, row + 1)
        z2 = marg**2 / self._marg_var * k / self._PAIR_QUANTILE
        pair = self._pair_after(x, row + 1)
        p2 = pair**2 / self._pair_var * k / self._PAIR_QUANTILE
        iu, ju = np.triu_indices(d, k=1)
        found = [(names[i], "mean", float(z2[i])) for i in range(d)]
        found += [(names[i], "variance", float(z2[d + i])) for i in range(d)]
        found += [
            (f"{names[i]}*{names[j]}", "dependence", float(p2[i, j]))
            for i, j in zip(iu.tolist(), ju.tolist(), strict=True)
        ]
        found.sort(key=lambda c: -c[2])
        return tuple((w, kind, s / (s + 1.0)) for w, kind, s in found[:10])

    def _advance_extra(self, x: np.ndarray) -> None:
        self._marg = self._marg_after(x, len(x))
        self._pair = self._pair_after(x, len(x))
        if not (np.isfinite(self._marg).all() and np.isfinite(self._pair).all()):
            self._reset_extra()  # a state restored from an older release's checkpoint

    def _reset_extra(self) -> None:
        self._marg = np.zeros(2 * self._n_features)
        self._pair = np.zeros((self._n_features, self._n_features))

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"_marg": self._marg, "_pair": self._pair}
