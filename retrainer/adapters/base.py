"""The one small protocol every model adapter implements, and what it reports.

An adapter is created empty (``Adapter()``), then either ``build(params, n_features,
classes)`` + ``fit(...)``, or ``Adapter.load(artifact_bytes)``. Its parameters alone describe
it (River-style), so a warm start is "the parent's parameters + the parent's weights".
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from driftline.retrainer.exceptions import AdapterError, TrainingTimeoutError

__all__ = ["Budget", "Deadline", "FitReport", "ModelAdapter", "classification_metrics", "metrics"]


@dataclass(frozen=True)
class Budget:
    """How long a fit may run.

    ``max_epochs`` passes over the data at most; ``patience`` stops after that many epochs
    without a better validation loss (needs validation data); ``target`` stops as soon as the
    validation ``metric`` reaches it; ``max_seconds`` stops gracefully, keeping the model so
    far; ``timeout_s`` raises :class:`TrainingTimeoutError` (the training fails).

    >>> Budget(max_epochs=5).max_epochs
    5
    """

    max_epochs: int = 30
    patience: int | None = 3
    max_seconds: float | None = None
    timeout_s: float | None = None
    target: float | None = None
    metric: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class FitReport:
    """What a fit did: epochs run, final training loss, wall time, and why it stopped.

    ``history`` holds the validation metric after each epoch (empty without validation
    data); ``start_metric`` is the validation metric before the first epoch (a warm start
    begins higher than a scratch model).

    >>> FitReport(epochs=3, loss=0.2, seconds=0.5).stopped
    'epochs'
    """

    epochs: int
    loss: float
    seconds: float
    stopped: str = "epochs"
    warm_started: bool = False
    note: str = ""
    start_metric: float | None = None
    history: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for the training record."""
        return {
            "epochs": self.epochs,
            "loss": self.loss,
            "seconds": self.seconds,
            "stopped": self.stopped,
            "warm_started": self.warm_started,
            "note": self.note,
            "start_metric": self.start_metric,
            "history": list(self.history),
        }


@runtime_checkable
class ModelAdapter(Protocol):
    """A trainable model behind one small interface (torch, scikit-learn, river, yours).

    ``framework`` is the name the adapter is registered under; model versions record it so
    that :func:`driftline.retrainer.adapters.load_adapter` can read the artifact back.
    """

    framework: str

    @property
    def params(self) -> dict[str, Any]:
        """Parameters that rebuild the same (untrained) model."""
        ...

    @property
    def classes(self) -> list[Any] | None:
        """Class labels (classification) or None (regression)."""
        ...

    @property
    def n_features(self) -> int:
        """Width of the feature vector."""
        ...

    def build(self, params: dict[str, Any], n_features: int, classes: Sequence[Any] | None) -> None:
        """Create a fresh model; ``classes=None`` means regression."""
        ...

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        warm_start: ModelAdapter | None = None,
        budget: Budget | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FitReport:
        """Train on ``(X, y)``, starting from ``warm_start``'s weights when given."""
        ...

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (classification) or values (regression)."""
        ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes``."""
        ...

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Metrics on labelled data (see :func:`metrics`)."""
        ...

    def save(self) -> bytes:
        """A pickle-free artifact; ``load`` reads it back."""
        ...

    @classmethod
    def load(cls, data: bytes) -> Self:
        """Rebuild a trained adapter from ``save()`` bytes."""
        ...


def metrics(
    task_classes: Sequence[Any] | None, y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, float]:
    """Classification (``accuracy``, ``f1_macro``) or regression (``mse``, ``mae``, ``r2``).

    >>> metrics(None, np.array([1.0, 2.0]), np.array([1.0, 3.0]))["mse"]
    0.5
    """
    if task_classes is not None:
        return classification_metrics(y_true, y_pred)
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    err = yp - yt
    var = float(np.var(yt))
    mse = float(np.mean(err**2))
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - mse / var if var > 0 else 0.0,
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``accuracy`` and ``f1_macro`` (over the classes present in ``y_true``).

    >>> classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]))["accuracy"]
    0.6666666666666666
    """
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    f1s = []
    for c in np.unique(yt):
        tp = float(np.sum((yp == c) & (yt == c)))
        fp = float(np.sum((yp == c) & (yt != c)))
        fn = float(np.sum((yp != c) & (yt == c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": float(np.mean(yt == yp)), "f1_macro": float(np.mean(f1s))}


def check_xy(X: np.ndarray, y: np.ndarray | None, n_features: int) -> np.ndarray:
    """``X`` as a finite float32 ``(n, n_features)`` matrix, rows matching ``y``."""
    x = np.asarray(X, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise AdapterError(
            f"X has shape {x.shape} but the model takes (n, {n_features}); "
            "pass one row per event with the pipeline's feature columns in order"
        )
    if y is not None and len(y) != len(x):
        raise AdapterError(f"X has {len(x)} rows but y has {len(y)}; pass one label per row")
    if not np.isfinite(x).all():
        raise AdapterError("X contains NaN or inf; drop or impute such rows before training")
    return x


class Deadline:
    """Hard time limit of a fit: ``check()`` raises once ``timeout_s`` has passed."""

    def __init__(self, timeout_s: float | None) -> None:
        self.start = time.perf_counter()
        self.timeout_s = timeout_s

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def check(self) -> None:
        if self.timeout_s is not None and self.elapsed > self.timeout_s:
            raise TrainingTimeoutError(
                f"training ran {self.elapsed:.1f}s, over model.timeout_s={self.timeout_s}; "
                "raise model.timeout_s or lower model.epochs / use fewer rows"
            )


def better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """Whether ``a`` beats ``b`` by more than ``margin`` for ``metric``.

    >>> better("accuracy", 0.9, 0.8, 0.05), better("mse", 0.9, 0.8)
    (True, False)
    """
    from driftline.config.pipeline import HIGHER_IS_BETTER

    if HIGHER_IS_BETTER[metric]:
        return a > b + margin
    return a < b - margin


class AdapterBase:
    """What the built-in adapters share: the description of a model (its parameters, classes
    and feature count), from which ``build`` makes the same model again."""

    framework = ""

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._classes: list[Any] | None = None
        self._n_features = 0

    @property
    def params(self) -> dict[str, Any]:
        return copy.deepcopy(self._params)

    @property
    def classes(self) -> list[Any] | None:
        return None if self._classes is None else list(self._classes)

    @property
    def n_features(self) -> int:
        return self._n_features

    def _description(self) -> dict[str, Any]:
        """What an artifact records besides the fitted state, to rebuild the same model."""
        return {"params": self._params, "classes": self._classes, "n_features": self._n_features}

    def _merge_params(self, params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        """``defaults`` updated by ``params``; an unknown name is an error, not ignored."""
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise AdapterError(
                f"unknown {self.framework} params {unknown}; allowed: {sorted(defaults)}"
            )
        return {**defaults, **params}
