"""OutputDrift: drift of a model's outputs, plus a label-free accuracy estimate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import isotonic_regression

from driftline.detectors._ewma import ewma_weights
from driftline.detectors._validation import as_matrix, check_positive_int
from driftline.detectors._whiten import whitening
from driftline.detectors.base import DriftDetector
from driftline.detectors.exceptions import InvalidInputError

__all__ = ["OutputDrift"]

_PROBA_TOL = 1e-3


class OutputDrift(DriftDetector):
    """Drift of predicted class probabilities (or predicted classes), CBPE-style accuracy.

    Fit on reference outputs: probabilities ``(n, c)`` (rows in [0, 1] summing to 1) or
    predicted classes as a 1-D integer array (one-hot encoded over ``n_classes``, inferred
    as ``max + 1`` when not given). The monitored vector is the class probabilities plus,
    for probabilities, the confidence ``max_c p_c``; its EWMA over an effective ``window`` is
    compared with the reference mean by a whitened (Hotelling) norm, with the threshold
    calibrated to ``ert`` like every detector here. ``features`` are the classes (and
    "confidence") ranked by their standardized shift.

    ``estimated_accuracy`` is the EWMA mean confidence of recent events: the expected
    accuracy if the model's probabilities are calibrated (confidence-based performance
    estimation), or None when fitted on class predictions or before any update. Pass the
    reference's true ``labels`` to ``fit`` and the confidence is first calibrated on them
    (CBPE-style): an isotonic (monotone) regression of "prediction was right" on
    ``max_c p_c`` over the labelled reference, so an under- or over-confident model is
    corrected. ``reference_accuracy`` is then the reference's measured accuracy and
    ``estimated_drop`` the estimated fall from it (what a performance trigger compares with
    its tolerance).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> ref = rng.dirichlet([8.0, 1.0, 1.0], size=2000)
        >>> det = OutputDrift(ert=1000, window=100).fit(ref)
        >>> det.update(rng.dirichlet([8.0, 1.0, 1.0], size=300)).drift
        False
        >>> res = det.update(rng.dirichlet([1.0, 1.0, 1.0], size=300))
        >>> res.drift, det.estimated_accuracy < 0.7
        (True, True)

        Calibrated on reference labels (this model is under-confident: right 95% of the time
        at a mean confidence of about 0.8):

        >>> probs = rng.dirichlet([8.0, 1.0, 1.0], size=2000)
        >>> labels = np.where(rng.random(2000) < 0.95, probs.argmax(1), (probs.argmax(1) + 1) % 3)
        >>> cal = OutputDrift(ert=1000, window=100).fit(probs, labels=labels)
        >>> _ = cal.update(rng.dirichlet([8.0, 1.0, 1.0], size=300))
        >>> abs(cal.reference_accuracy - 0.95) < 0.02, abs(cal.estimated_accuracy - 0.95) < 0.03
        (True, True)
    """

    _fitted_arrays: ClassVar[tuple[str, ...]] = ("_white", "_mean_raw", "_var_raw")
    # a squared standardized shift of one output is about chi-square with 1 dof
    _score_quantile: ClassVar[float] = 6.635

    def __init__(
        self,
        ert: int = 10_000,
        window: int = 500,
        n_classes: int | None = None,
        seed: int = 0,
        n_simulated: int = 1_000_000,
        short_window: int | None = None,
    ) -> None:
        super().__init__(
            ert=ert, window=window, seed=seed, n_simulated=n_simulated, short_window=short_window
        )
        self.n_classes = n_classes
        self._labels = False
        self._n_out = 0
        self._conf = np.zeros(2)
        self._marg = np.zeros(0)
        self._calib_x = np.zeros(0)
        self._calib_y = np.zeros(0)
        self._ref_accuracy = np.array(np.nan)

    def fit(
        self,
        reference: np.ndarray,
        feature_names: Sequence[str] | None = None,
        labels: np.ndarray | None = None,
    ) -> Any:
        """Fit on reference outputs; with true ``labels``, also calibrate the accuracy estimate."""
        self._calib_x, self._calib_y = np.zeros(0), np.zeros(0)
        self._ref_accuracy = np.array(np.nan)
        super().fit(reference, feature_names)
        if labels is not None:
            self._calibrate(np.asarray(reference), np.asarray(labels))
        return self

    def _calibrate(self, reference: np.ndarray, labels: np.ndarray) -> None:
        if self._labels:
            raise InvalidInputError(
                "labels calibrate probabilities; this detector was fitted on predicted classes"
            )
        if labels.shape != (len(reference),) or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(
                f"labels must be one integer class per reference row ({len(reference)}), "
                f"got shape {labels.shape} and dtype {labels.dtype}"
            )
        conf = reference.max(axis=1)
        correct = (reference.argmax(axis=1) == labels).astype(np.float64)
        order = np.argsort(conf, kind="stable")
        fitted = isotonic_regression(correct[order], increasing=True).x
        # Keep one point per distinct confidence (the fitted step function's value there).
        xs, last = np.unique(conf[order][::-1], return_index=True)
        self._calib_x = xs
        self._calib_y = fitted[::-1][last]
        self._ref_accuracy = np.array(correct.mean())

    def _expected_correct(self, x: np.ndarray) -> np.ndarray:
        conf = x.max(axis=1)
        if self._calib_x.size == 0:
            return conf
        return np.interp(conf, self._calib_x, self._calib_y)

    @property
    def estimated_accuracy(self) -> float | None:
        """Expected accuracy of recent events (calibrated confidence when labels were given)."""
        if self._labels or not self._fitted or self._conf[1] <= 0:
            return None
        return float(self._conf[0] / self._conf[1])

    def estimate_accuracy(self, probabilities: np.ndarray) -> float:
        """Expected accuracy of a chunk of outputs (calibrated when fitted with labels).

        Pure: the chart's state is not touched, so a chunked report can call it freely.
        """
        self._require_fitted()
        if self._labels:
            raise InvalidInputError(
                "an accuracy estimate needs probabilities; this detector was fitted on classes"
            )
        return float(self._expected_correct(self._batch_matrix(probabilities)).mean())

    @property
    def reference_accuracy(self) -> float | None:
        """Accuracy measured on the labelled reference (None without labels)."""
        value = float(self._ref_accuracy)
        return None if np.isnan(value) else value

    @property
    def estimated_drop(self) -> float | None:
        """``reference_accuracy - estimated_accuracy`` (None without labels or updates)."""
        est, ref = self.estimated_accuracy, self.reference_accuracy
        return None if est is None or ref is None else ref - est

    def _check_params(self) -> None:
        super()._check_params()
        if self.n_classes is not None:
            check_positive_int("n_classes", self.n_classes, "number of model classes")

    # ------------------------------------------------------------------ inputs
    def _reference_matrix(self, reference: np.ndarray) -> np.ndarray:
        arr = np.asarray(reference)
        self._labels = arr.ndim == 1
        if self._labels:
            self._n_out = int(self.n_classes) if self.n_classes is not None else 0
            if not self._n_out:
                self._n_out = int(self._label_array(arr, "reference").max()) + 1
            return self._one_hot(arr, "reference")
        x = as_matrix(arr, "reference", allow_row=False)
        self._check_probabilities(x, "reference")
        self._n_out = x.shape[1]
        return x

    def _batch_matrix(self, batch: np.ndarray) -> np.ndarray:
        if self._labels:
            return self._one_hot(np.atleast_1d(np.asarray(batch)), "batch")
        x = as_matrix(batch, "batch", self._n_out)
        self._check_probabilities(x, "batch")
        return x

    def _label_array(self, arr: np.ndarray, name: str) -> np.ndarray:
        if arr.size == 0:
            raise InvalidInputError(f"{name} is empty; pass at least one predicted class")
        if arr.ndim != 1:
            raise InvalidInputError(
                f"{name} has shape {arr.shape} but the detector was fitted on predicted "
                "classes; pass a 1-D array of class indices"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(
                f"{name} is 1-D with dtype {arr.dtype}; pass predicted classes as integers, "
                "or probabilities as a 2-D (n, n_classes) array"
            )
        return arr

    def _one_hot(self, arr: np.ndarray, name: str) -> np.ndarray:
        labels = self._label_array(arr, name)
        bad = (labels < 0) | (labels >= self._n_out)
        if bad.any():
            raise InvalidInputError(
                f"{name} has class {int(labels[bad][0])} outside 0..{self._n_out - 1}; "
                "pass n_classes covering every class the model can predict"
            )
        out = np.zeros((len(labels), self._n_out))
        out[np.arange(len(labels)), labels] = 1.0
        return out

    @staticmethod
    def _check_probabilities(x: np.ndarray, name: str) -> None:
        sums = x.sum(axis=1)
        bad = (np.abs(sums - 1.0) > _PROBA_TOL) | (x.min(axis=1) < 0) | (x.max(axis=1) > 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"{name} row {row} is not a probability vector (sum {sums[row]:.4f}); pass "
                "softmax outputs, or predicted classes as a 1-D integer array"
            )

    def _reference_width(self, x: np.ndarray) -> int:
        return self._n_out

    def _attribution_names(self) -> tuple[str, ...]:
        return self._feature_names if self._labels else (*self._feature_names, "confidence")

    # ------------------------------------------------------------------ chart
    def _outputs(self, x: np.ndarray) -> np.ndarray:
        if self._labels:
            return x
        return np.concatenate([x, x.max(axis=1, keepdims=True)], axis=1)

    def _fit_map(self, x: np.ndarray, rng: np.random.Generator) -> None:
        raw = self._outputs(x)
        self._mean_raw = raw.mean(axis=0)
        var = raw.var(axis=0)
        self._var_raw = np.where(var > 0, var, 1.0)
        # Probabilities sum to one, so the covariance is singular; whitening's eigenvalue
        # floor keeps that direction harmless.
        self._white = whitening(raw).astype(np.float32)

    def _raw_features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._outputs(x).astype(np.float32) @ self._white)

    def _map_dim(self) -> int:
        return int(self._white.shape[0])

    def _statistic(self, m: np.ndarray) -> np.ndarray:
        return np.einsum("...i,...i->...", m, m) * ((2.0 - self.lam) / self.lam)

    def _marg_after(self, x: np.ndarray, n: int) -> np.ndarray:
        w = ewma_weights(n, self.lam)
        fresh = w @ (self._outputs(x[:n]) - self._mean_raw)
        return (1.0 - self.lam) ** n * self._marg + fresh

    def _attribution(self, x: np.ndarray, m: np.ndarray, row: int) -> np.ndarray:
        marg = self._marg_after(x, row + 1)
        return np.asarray(marg**2 / self._var_raw * ((2.0 - self.lam) / self.lam))

    def _advance_extra(self, x: np.ndarray) -> None:
        self._marg = self._marg_after(x, len(x))
        if not self._labels:
            w = ewma_weights(len(x), self.lam)
            decay = (1.0 - self.lam) ** len(x)
            self._conf = decay * self._conf + np.array([w @ self._expected_correct(x), w.sum()])

    def _reset_extra(self) -> None:
        self._marg = np.zeros(len(self._mean_raw))
        self._conf = np.zeros(2)

    def _after_restore(self) -> None:
        self._labels = bool(self._labels)
        self._n_out = int(self._n_out)

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {
            "_marg": self._marg,
            "_conf": self._conf,
            "_labels": np.array(self._labels),
            "_n_out": np.array(self._n_out),
            "_calib_x": self._calib_x,
            "_calib_y": self._calib_y,
            "_ref_accuracy": self._ref_accuracy,
        }
