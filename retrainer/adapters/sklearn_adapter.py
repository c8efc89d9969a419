"""scikit-learn estimators behind the adapter protocol, persisted with skops (no pickle).

Warm start uses ``partial_fit`` when the estimator has it (one call per epoch, so budgets and
early stopping work as for torch), else ``warm_start=True`` when the estimator takes it,
else it trains from scratch and says so in the fit report.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler

from driftline.retrainer.adapters._skops import dump_artifact, load_artifact
from driftline.retrainer.adapters.base import (
    AdapterBase,
    Budget,
    Deadline,
    FitReport,
    better,
    check_xy,
    metrics,
)
from driftline.retrainer.exceptions import AdapterError, NotBuiltError

__all__ = ["SklearnAdapter"]

_DEFAULTS: dict[str, Any] = {"estimator": None, "estimator_params": {}, "scale": True, "seed": 0}
_DEFAULT_ESTIMATOR = {
    True: ("sklearn.linear_model.SGDClassifier", {"loss": "log_loss"}),
    False: ("sklearn.linear_model.SGDRegressor", {}),
}
# Types inside fitted estimators that skops does not trust by default, found by saving linear
# models, trees, forests, (hist) gradient boosting, SVMs, kNN, naive Bayes, MLPs and scaler
# pipelines and asking `skops.io.get_untrusted_types`; anything else is refused.
_INTERNAL_TYPES = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
    }
)


@functools.cache
def _trusted_types() -> frozenset[str]:
    """Every scikit-learn estimator class by full name, plus `_INTERNAL_TYPES`."""
    from sklearn.utils import all_estimators

    estimators = {f"{c.__module__}.{c.__qualname__}" for _, c in all_estimators()}
    return frozenset(estimators) | _INTERNAL_TYPES


class SklearnAdapter(AdapterBase):
    """Any scikit-learn estimator named by dotted path (default ``SGDClassifier`` /
    ``SGDRegressor``), with an optional input scaler kept across warm starts.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(300, 2)); y = (X[:, 0] > 0).astype(int)
        >>> m = SklearnAdapter(); m.build({}, n_features=2, classes=[0, 1])
        >>> _ = m.fit(X, y, budget=Budget(max_epochs=5, patience=None))
        >>> m.evaluate(X, y)["accuracy"] > 0.9
        True
        >>> SklearnAdapter.load(m.save()).predict(X[:3]).tolist() == m.predict(X[:3]).tolist()
        True
    """

    framework = "sklearn"

    def __init__(self) -> None:
        super().__init__()
        self._est: Any = None
        self._scaler: StandardScaler | None = None
        self._fitted = False

    def build(self, params: dict[str, Any], n_features: int, classes: Sequence[Any] | None) -> None:
        p = self._merge_params(params, _DEFAULTS)
        if p["estimator"] is None:
            p["estimator"], default_kwargs = _DEFAULT_ESTIMATOR[classes is not None]
            p["estimator_params"] = {**default_kwargs, **p["estimator_params"]}
        self._params = p
        self._n_features = int(n_features)
        self._classes = None if classes is None else [_plain(c) for c in classes]
        self._est = _make_estimator(p["estimator"], p["estimator_params"], int(p["seed"]))
        self._scaler = None
        self._fitted = False

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        warm_start: Any = None,
        budget: Budget | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FitReport:
        self._require_built()
        budget = budget or Budget()
        deadline = Deadline(budget.timeout_s)
        x = check_xy(X, y, self._n_features).astype(np.float64)
        yy = np.asarray(y)
        note, warm = "", False
        if warm_start is not None:
            warm, note = self._take_parent(warm_start)
        if self._scaler is None and self._params["scale"]:
            self._scaler = StandardScaler().fit(x)
        xs = self._scale(x)
        metric = budget.metric or ("accuracy" if self._classes is not None else "mse")
        start_metric = self._val_metric(validation, metric) if self._fitted else None
        history: list[float] = []
        stopped, epochs = "epochs", 0
        if hasattr(self._est, "partial_fit"):
            kwargs = {"classes": np.asarray(self._classes)} if self._classes is not None else {}
            best: float | None = None
            stale = 0
            while epochs < budget.max_epochs:
                self._est.partial_fit(xs, yy, **kwargs)
                self._fitted = True
                epochs += 1
                deadline.check()
                current = self._val_metric(validation, metric)
                if current is not None:
                    history.append(current)
                    if budget.target is not None and not better(metric, budget.target, current):
                        stopped = "target"
                        break
                    if best is None or better(metric, current, best):
                        best, stale = current, 0
                    else:
                        stale += 1
                    if budget.patience is not None and stale >= budget.patience:
                        stopped = "patience"
                        break
                if budget.max_seconds is not None and deadline.elapsed > budget.max_seconds:
                    stopped = "max_seconds"
                    break
        else:
            self._est.fit(xs, yy)
            self._fitted, epochs = True, 1
            deadline.check()
            current = self._val_metric(validation, metric)
            if current is not None:
                history.append(current)
        loss = self._train_loss(xs, yy)
        return FitReport(
            epochs=epochs,
            loss=loss,
            seconds=deadline.elapsed,
            stopped=stopped,
            warm_started=warm,
            note=note,
            start_metric=start_metric,
            history=tuple(history),
        )

    def _take_parent(self, parent: Any) -> tuple[bool, str]:
        """Continue from the parent's fitted estimator when the estimator allows it."""
        if not isinstance(parent, SklearnAdapter) or not parent._fitted:
            return False, f"parent {type(parent).__name__} is not a fitted sklearn model"
        if parent._params["estimator"] != self._params["estimator"]:
            return False, "parent estimator differs; trained from scratch"
        if parent._n_features != self._n_features:
            return False, "parent takes other features; trained from scratch"
        if hasattr(self._est, "partial_fit"):
            if parent._classes != self._classes:
                return False, "class set changed and partial_fit cannot add classes; from scratch"
        elif "warm_start" in self._est.get_params():
            est = copy.deepcopy(parent._est)
            est.set_params(warm_start=True)
            self._est, self._scaler, self._fitted = est, copy.deepcopy(parent._scaler), True
            return True, "continued with warm_start=True"
        else:
            return False, "estimator has neither partial_fit nor warm_start; from scratch"
        self._est = copy.deepcopy(parent._est)
        self._scaler, self._fitted = copy.deepcopy(parent._scaler), True
        return True, "continued with partial_fit"

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return x if self._scaler is None else self._scaler.transform(x)

    def _val_metric(self, val: tuple[np.ndarray, np.ndarray] | None, metric: str) -> float | None:
        if val is None or len(val[1]) == 0 or not self._fitted:
            return None
        return self.evaluate(val[0], val[1]).get(metric)

    def _train_loss(self, xs: np.ndarray, y: np.ndarray) -> float:
        pred = self._est.predict(xs)
        if self._classes is not None:
            return float(np.mean(pred != y))
        err = float(np.mean((pred - y.astype(np.float64)) ** 2))
        return err if math.isfinite(err) else math.inf

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        x = check_xy(X, None, self._n_features).astype(np.float64)
        return np.asarray(self._est.predict(self._scale(x)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        if self._classes is None or not hasattr(self._est, "predict_proba"):
            raise AdapterError(
                f"{self._params['estimator']} gives no probabilities; use a classifier with "
                "predict_proba (e.g. SGDClassifier(loss='log_loss'))"
            )
        x = self._scale(check_xy(X, None, self._n_features).astype(np.float64))
        proba = np.asarray(self._est.predict_proba(x))
        order = [list(self._est.classes_).index(c) for c in self._classes]
        return proba[:, order]

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return metrics(self._classes, np.asarray(y), self.predict(X))

    def save(self) -> bytes:
        self._require_fitted()
        return dump_artifact(
            self.framework, self._description(), estimator=self._est, scaler=self._scaler
        )

    @classmethod
    def load(cls, data: bytes) -> Self:
        doc = load_artifact(data, cls.framework, _trusted_types(), "scikit-learn estimators")
        meta = doc["meta"]
        out = cls()
        out._params, out._classes = meta["params"], meta["classes"]
        out._n_features, out._est, out._scaler = meta["n_features"], doc["estimator"], doc["scaler"]
        out._fitted = True
        return out

    def _require_built(self) -> None:
        if self._est is None:
            raise NotBuiltError("this sklearn adapter has no model yet; call build(...) first")

    def _require_fitted(self) -> None:
        self._require_built()
        if not self._fitted:
            raise NotBuiltError("this sklearn model is not fitted; call fit(...) first")


def _make_estimator(path: str, kwargs: dict[str, Any], seed: int) -> BaseEstimator:
    module_name, _, name = path.rpartition(".")
    if not path.startswith("sklearn.") or not module_name:
        raise AdapterError(
            f"estimator {path!r} is not a scikit-learn class path such as "
            "'sklearn.linear_model.SGDClassifier'; wrap other libraries in your own adapter"
        )
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise AdapterError(f"cannot import estimator {path!r}: {exc}") from None
    est = cls(**kwargs)
    if "random_state" in est.get_params() and "random_state" not in kwargs:
        est.set_params(random_state=seed)
    return est


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
