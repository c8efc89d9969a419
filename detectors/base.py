"""The detector contract shared by every drift detector (River-like)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from driftline.detectors._ewma import (
    calibrate_threshold,
    ewma,
    lam_for_window,
)
from driftline.detectors._serialization import pack, unpack
from driftline.detectors._threads import single_blas_thread
from driftline.detectors._validation import (
    as_matrix,
    check_ert,
    check_feature_names,
    check_positive_int,
)
from driftline.detectors.exceptions import (
    InvalidInputError,
    NotFittedError,
    SmallReferenceWarning,
)
from driftline.detectors.result import DriftResult, PartialState

__all__ = ["DriftDetector"]

_MIN_REFERENCE = 40
# Below this many reference rows per event of the longest window, the reference's own
# sampling error is a large part of what the chart sees, and a bootstrap of so few rows
# understates how far live data can sit from it: the threshold is then calibrated for a
# longer run length ((4 * window / rows) ** 2 times ert, at most _MAX_INFLATION times),
# erring towards fewer false alarms and a longer delay.
_ROWS_PER_WINDOW = 4
_MAX_INFLATION = 10.0


class DriftDetector:
    """Base class: an EWMA chart over a feature map, with a threshold calibrated to ``ert``.

    The constructor only stores parameters. ``fit(reference)`` splits the reference in two
    halves (seeded): one fixes the feature map (scales, kernel, whitening), the whole
    reference fixes its mean, and the other half is resampled to simulate no-drift runs
    (each from its own bootstrap population the size of the reference, so the runs vary as
    live data vary around a reference of that size) and set the threshold
    so that, without drift, there are on average ``ert`` events between false alarms
    (counted from ``fit`` or ``reset``). A detector whose map has only a few numbers per
    feature (``FeatureDrift``) fits it on the whole reference and resamples all of it.

    Parameters shared by all detectors: ``ert`` (expected events between false alarms),
    ``window`` (effective number of recent events the statistic averages: EWMA weight
    ``2 / (window + 1)``; larger sees smaller shifts, later), ``short_window`` (a second,
    shorter chart on the same features: ``None`` picks ``window // 8`` when that is at least
    10 events, ``0`` turns it off), ``seed`` (split, random features and simulation are
    deterministic given it), ``n_simulated`` (no-drift events simulated in ``fit``; fewer is
    faster but calibrates large ``ert`` less precisely).

    Two scales: a long window sees small persistent shifts, a short one sees large shifts
    sooner (a single EWMA must choose). Both follow the same feature map; each scale's
    statistic is divided by its own threshold at ``ert`` (each calibrated alone) and the
    alarm statistic is the larger of the two, so ``statistic`` and ``threshold`` are on that
    normalized scale (the threshold lands a little above 1). The
    threshold of the maximum is calibrated jointly by simulating both charts on the same
    resampled runs: the combined false-alarm rate is the requested ``ert``, not twice it.

    Alarm behaviour: ``update`` reports ``drift=True`` for every batch in which the statistic
    is above the threshold at some row, with ``index`` the first such row. ``drift_detected``
    latches: it stays True until ``reset()``, which restarts monitoring against the same
    reference; updates after an alarm keep working (the chart keeps following the data).
    Subclasses: :class:`~driftline.detectors.OnlineMMD`, :class:`~driftline.detectors.FeatureDrift`,
    :class:`~driftline.detectors.OutputDrift`.

    Example:
        >>> import numpy as np
        >>> from driftline.detectors import OnlineMMD
        >>> det = OnlineMMD(ert=1000, seed=0).fit(np.random.default_rng(0).normal(size=(500, 2)))
        >>> restored = DriftDetector.from_bytes(det.to_bytes())
        >>> type(restored).__name__, restored.n_features
        ('OnlineMMD', 2)
    """

    _registry: ClassVar[dict[str, type[DriftDetector]]] = {}
    #: names of fitted ndarray attributes that ``to_bytes`` must carry (set by subclasses)
    _fitted_arrays: ClassVar[tuple[str, ...]] = ()
    #: whether the feature map is fitted on one half and the threshold on the other; a map
    #: with few fitted numbers per feature does not overfit, and then resampling the whole
    #: reference estimates rare values' frequencies twice as well
    _hold_out: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DriftDetector._registry[cls.__name__] = cls

    def __init__(
        self,
        ert: int = 10_000,
        window: int = 500,
        seed: int = 0,
        n_simulated: int = 1_000_000,
        short_window: int | None = None,
    ) -> None:
        self.ert = ert
        self.window = window
        self.short_window = short_window
        self.seed = seed
        self.n_simulated = n_simulated
        self._fitted = False
        self._feature_names: tuple[str, ...] = ()
        self._n_features = 0
        self._threshold = np.inf
        self._state = np.zeros(0)
        self._state_short = np.zeros(0)
        self._scale_norm = np.ones(0)
        self._center = np.zeros(0, dtype=np.float32)
        self._n_seen = 0
        self._drift = False

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters: ``type(det)(**det.get_params())`` is an unfitted clone."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name in sig.parameters if name != "self"}

    def _check_params(self) -> None:
        check_ert(self.ert)
        check_positive_int("window", self.window, "effective number of recent events")
        check_positive_int("n_simulated", self.n_simulated, "events simulated to calibrate")
        if self.short_window is not None and self.short_window != 0:
            check_positive_int("short_window", self.short_window, "0 for one scale, or None")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise InvalidInputError(f"seed must be an integer, got {self.seed!r}")

    # ------------------------------------------------------------------ read-only state
    @property
    def drift_detected(self) -> bool:
        """True once an alarm fired, until :meth:`reset`."""
        return self._drift

    @property
    def n_features(self) -> int:
        """Columns of the reference (0 before fit)."""
        return self._n_features

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names used in ``DriftResult.features`` ("x0", "x1", ... unless given to fit)."""
        return self._feature_names

    @property
    def n_seen(self) -> int:
        """Events seen since ``fit`` or the last ``reset``."""
        return self._n_seen

    @property
    def threshold(self) -> float:
        """Calibrated alarm threshold of the statistic."""
        return float(self._threshold)

    @property
    def lam(self) -> float:
        """EWMA weight of the newest event."""
        return lam_for_window(self.window)

    @property
    def windows(self) -> tuple[int, ...]:
        """Effective windows of the charts, longest first (one or two)."""
        short = self.short_window
        if short is None:
            short = self.window // 8 if self.window // 8 >= 10 else 0
        return (int(self.window), int(short)) if 0 < short < self.window else (int(self.window),)

    # ------------------------------------------------------------------ fit / update
    def fit(self, reference: np.ndarray, feature_names: Sequence[str] | None = None) -> Any:
        """Learn the reference distribution and calibrate the threshold; returns ``self``."""
        with single_blas_thread():
            return self._fit(reference, feature_names)

    def _fit(self, reference: np.ndarray, feature_names: Sequence[str] | None) -> Any:
        self._check_params()
        x = self._reference_matrix(reference)
        if x.shape[0] < _MIN_REFERENCE:
            raise InvalidInputError(
                f"reference has {x.shape[0]} rows; pass at least {_MIN_REFERENCE} "
                "(they are resampled to calibrate the false-alarm rate)"
            )
        self._n_features = x.shape[1]
        self._feature_names = check_feature_names(feature_names, self._reference_width(x))
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(x.shape[0])
        half = x.shape[0] // 2
        self._fit_map(x[order[:half]] if self._hold_out else x, rng)
        self._fit_center(x)
        hold = self._feature_map(x[order[half:]] if self._hold_out else x)
        hold = hold - hold.mean(axis=0)
        self._prepare_statistic(hold, rng)
        hold32 = hold.astype(np.float32)
        target = self._target_ert(x.shape[0])
        recursions = [self._recursion(w) for w in self.windows]
        lams = np.concatenate([g for g, _ in recursions])
        decays = None
        if any(d is not None for _, d in recursions):
            decays = np.concatenate([1.0 - g if d is None else d for g, d in recursions])
        tiled = np.tile(hold32, len(self.windows))
        self._scale_norm = np.ones(len(self.windows))
        if len(self.windows) > 1:
            self._scale_norm = self._scale_thresholds(hold32, x.shape[0], target, rng)
        self._threshold = calibrate_threshold(
            tiled,
            self._joint,
            lams,
            target,
            int(self.n_simulated),
            rng,
            x.shape[0],
            decay=decays,
        )
        self._fitted = True
        self.reset()
        return self

    def _fit_center(self, x: np.ndarray) -> None:
        """``self._center``: the reference mean of the raw feature map."""
        self._center = np.zeros(self._map_dim(), dtype=np.float32)
        self._center = _mean_rows(self._feature_map, x).astype(np.float32)

    def _recursion(self, window: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-column gain and decay of the chart with this window (None: ``1 - gain``)."""
        lam = lam_for_window(window)
        special = self._column_recursion(lam)
        if special is None:
            return np.full(self._map_dim(), lam), None
        return special

    def _target_ert(self, n_rows: int) -> int:
        """``ert`` to calibrate for: inflated, with a warning, when the reference is small."""
        needed = _ROWS_PER_WINDOW * int(self.window)
        if n_rows >= needed:
            return int(self.ert)
        factor = min((needed / n_rows) ** 2, _MAX_INFLATION)
        warnings.warn(
            SmallReferenceWarning(
                f"reference has {n_rows} rows, fewer than {needed} ({_ROWS_PER_WINDOW} per "
                f"event of window={self.window}): too few to calibrate ert={self.ert}; the "
                f"threshold is calibrated for ert={int(self.ert * factor)} instead (fewer "
                "false alarms, later detection); pass a larger reference or a smaller window"
            ),
            stacklevel=4,
        )
        return int(self.ert * factor)

    def _scale_stats(self, m: np.ndarray) -> list[np.ndarray]:
        """Each scale's statistic from stacked states ``(..., scales * map_dim)``."""
        dim, out = self._map_dim(), []
        for k, w in enumerate(self.windows):
            # Subclass statistics carry the long window's (2 - lam) / lam variance factor.
            lam = lam_for_window(w)
            factor = ((2.0 - lam) / lam) / ((2.0 - self.lam) / self.lam)
            out.append(self._statistic(m[..., k * dim : (k + 1) * dim]) * factor)
        return out

    def _joint(self, m: np.ndarray) -> np.ndarray:
        """Alarm statistic: the largest of the scales' normalized statistics."""
        stats = self._scale_stats(m)
        if len(stats) == 1:
            return stats[0]
        return np.asarray(
            np.maximum(stats[0] / self._scale_norm[0], stats[1] / self._scale_norm[1])
        )

    def _scale_thresholds(
        self, hold: np.ndarray, n_rows: int, ert: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Each scale's own threshold at the target ert (half the simulation budget each).

        Dividing by these puts both charts' *tails* on one scale (the 99% quantile would
        not: a short window's statistic is far more heavy-tailed), so the long chart keeps
        almost all of its power and the joint threshold lands just above 1.
        """
        out = []
        for w in self.windows:
            lam = lam_for_window(w)
            factor = ((2.0 - lam) / lam) / ((2.0 - self.lam) / self.lam)

            def one(m: np.ndarray, factor: float = factor) -> np.ndarray:
                return np.asarray(self._statistic(m) * factor)

            budget = max(int(self.n_simulated) // 2, 1)
            gains, decays = self._recursion(w)
            h = calibrate_threshold(
                hold,
                one,
                gains if decays is not None else lam,
                ert,
                budget,
                rng,
                n_rows,
                decay=decays,
            )
            out.append(h if h > 0 else 1.0)
        return np.array(out)

    def reset(self) -> None:
        """Monitor again against the same reference (clears the alarm and ``n_seen``)."""
        self._require_fitted()
        self._state = np.zeros(self._map_dim())
        self._state_short = np.zeros(self._map_dim() if len(self.windows) > 1 else 0)
        self._n_seen = 0
        self._drift = False
        self._reset_extra()

    def update(self, batch: np.ndarray) -> DriftResult:
        """Feed ``(b, d)`` rows (or one row of length ``d``) in stream order."""
        with single_blas_thread():  # once for both halves (the inner ones are then free)
            return self.merge(self.partial_state(batch))

    def partial_state(self, batch: np.ndarray) -> PartialState:
        """The per-row summary of ``batch`` that :meth:`merge` folds into the chart.

        This is the expensive, stateless half of ``update`` (validation and the feature map),
        so each partition's worker can compute it and one owner can ``merge`` every
        partition's summaries into one pipeline-level chart:
        ``update(b) == merge(partial_state(b))``.
        """
        self._require_fitted()
        x = self._batch_matrix(batch)
        with single_blas_thread():
            return PartialState(features=self._feature_map(x), rows=x)

    def check_partial(self, partial: PartialState) -> None:
        """Raise `InvalidInputError` unless :meth:`merge` can fold ``partial`` (its shapes
        are those of this detector's rows and feature map)."""
        self._require_fitted()
        if (
            partial.features.shape != (len(partial), self._map_dim())
            or partial.rows.shape[1] != self._n_features
        ):
            raise InvalidInputError(
                f"partial state has features {partial.features.shape} and rows "
                f"{partial.rows.shape}; this detector expects ({self._map_dim()},) features "
                "per row: merge only summaries from identically fitted detectors"
            )

    def merge(self, partial: PartialState) -> DriftResult:
        """Fold one summary from :meth:`partial_state` (of this or an identically fitted
        detector) into the chart, in the order summaries arrive."""
        self.check_partial(partial)
        with single_blas_thread():
            return self._update(partial.rows, partial.features)

    def _chart(self, z: np.ndarray, state: np.ndarray, window: int) -> np.ndarray:
        gains, decays = self._recursion(window)
        if decays is None:
            return ewma(z, state, lam_for_window(window))
        return ewma(z, state, gains, decays)

    def _chart_stats(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The long chart's states, the short chart's (None with one window) and the alarm
        statistic at each row of ``z``."""
        m = self._chart(z, self._state, self.windows[0])
        short = None
        if len(self.windows) > 1:
            short = self._chart(z, self._state_short, self.windows[1])
            stats = self._joint(np.concatenate([m, short], axis=-1))
        else:
            stats = self._statistic(m)
        return m, short, stats

    def _update(self, x: np.ndarray, z: np.ndarray) -> DriftResult:
        m, short, stats = self._chart_stats(z)
        over = np.flatnonzero(stats > self._threshold)
        row = int(over[0]) if over.size else len(stats) - 1
        scores = self._attribution(x, m, row)
        changes = self._changes(x, row) if over.size else ()
        self._advance_extra(x)
        # copies: a view would keep the whole batch's states alive
        self._state = m[-1].copy()
        if short is not None:
            self._state_short = short[-1].copy()
        self._n_seen += len(x)
        self._drift = self._drift or bool(over.size)
        bounded = scores / (scores + self._score_quantile)
        ranked = sorted(
            zip(self._attribution_names(), bounded.tolist(), strict=True), key=lambda p: -p[1]
        )
        return DriftResult(
            drift=bool(over.size),
            index=int(over[0]) if over.size else None,
            statistic=float(stats[row]),
            threshold=float(self._threshold),
            features=tuple((n, float(s)) for n, s in ranked),
            changes=changes,
        )

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(reference) before update/reset"
            )

    # ------------------------------------------------------------------ hooks
    def _reference_matrix(self, reference: np.ndarray) -> np.ndarray:
        return as_matrix(reference, "reference", allow_row=False)

    def _batch_matrix(self, batch: np.ndarray) -> np.ndarray:
        return as_matrix(batch, "batch", self._n_features)

    def _reference_width(self, x: np.ndarray) -> int:
        return int(x.shape[1])

    def _attribution_names(self) -> tuple[str, ...]:
        return self._feature_names

    def _fit_map(self, x: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _feature_map(self, x: np.ndarray) -> np.ndarray:
        """Features of rows, centered on the reference mean (``self._center``)."""
        return self._raw_features(x) - self._center

    def _raw_features(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _map_dim(self) -> int:
        raise NotImplementedError

    def _column_recursion(self, lam: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-column ``(gain, decay)`` of the chart of weight ``lam``, or None for an
        exponentially weighted mean of every column (gain ``lam``, decay ``1 - lam``)."""
        return None

    def _prepare_statistic(self, z_hold: np.ndarray, rng: np.random.Generator) -> None:
        """Fit anything the statistic needs from held-out features (default: nothing)."""

    def _statistic(self, m: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _attribution(self, x: np.ndarray, m: np.ndarray, row: int) -> np.ndarray:
        raise NotImplementedError

    #: 99% no-drift quantile of an attribution score (``DriftResult`` bounds scores by it)
    _score_quantile: ClassVar[float] = 1.0

    def _changes(self, x: np.ndarray, row: int) -> tuple[tuple[str, str, float], ...]:
        """``(what, kind, score)`` at ``row``, before ``_advance_extra`` (default: none)."""
        return ()

    def _reset_extra(self) -> None:
        """Clear subclass monitoring state (default: none)."""

    def _advance_extra(self, x: np.ndarray) -> None:
        """Move subclass monitoring state past the batch (default: none)."""

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _after_restore(self) -> None:
        """Turn restored 0-d arrays back into Python scalars (default: none)."""

    # ------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        """Pickle-free snapshot of parameters, fitted reference summary and monitoring state."""
        header: dict[str, Any] = {
            "kind": type(self).__name__,
            "params": _jsonable(self.get_params()),
            "fitted": self._fitted,
            "feature_names": list(self._feature_names),
            "n_features": self._n_features,
            "threshold": float(self._threshold),
            "n_seen": self._n_seen,
            "drift": self._drift,
        }
        arrays: dict[str, np.ndarray] = {}
        if self._fitted:
            arrays = {name: getattr(self, name) for name in self._fitted_arrays}
            arrays["_state"] = self._state
            arrays["_state_short"] = self._state_short
            arrays["_scale_norm"] = self._scale_norm
            arrays["_center"] = self._center
            arrays.update(self._extra_state())
        return pack(header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        """Restore any detector written by ``to_bytes`` (the right subclass is chosen)."""
        header, arrays = unpack(data)
        kind = header.get("kind")
        target = DriftDetector._registry.get(str(kind))
        if target is None or not issubclass(target, cls):
            raise InvalidInputError(
                f"bytes hold a {kind!r}, which is not a {cls.__name__}; "
                "call from_bytes on DriftDetector or on the matching class"
            )
        det = target(**header["params"])
        det._fitted = bool(header["fitted"])
        det._feature_names = tuple(header["feature_names"])
        det._n_features = int(header["n_features"])
        det._threshold = float(header["threshold"])
        det._n_seen = int(header["n_seen"])
        det._drift = bool(header["drift"])
        for name, value in arrays.items():
            setattr(det, name, value)
        det._after_restore()
        return det

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _mean_rows(fn: Any, x: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    total = sum(
        fn(x[i : i + chunk]).astype(np.float64).sum(axis=0) for i in range(0, len(x), chunk)
    )
    return np.asarray(total) / len(x)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out
