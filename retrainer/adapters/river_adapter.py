"""River (online) models behind the adapter protocol, persisted with skops (no pickle).

An online model warm-starts naturally: the child is the parent's model, learning on.
Class labels are mapped to strings inside the model so that its state stays skops-safe.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from driftline.retrainer.adapters._skops import dump_artifact, load_artifact
from driftline.retrainer.adapters.base import (
    AdapterBase,
    Budget,
    Deadline,
    FitReport,
    check_xy,
    metrics,
)
from driftline.retrainer.exceptions import AdapterError, NotBuiltError

__all__ = ["RiverAdapter"]

_DEFAULTS: dict[str, Any] = {"model": None, "model_params": {}, "scale": None, "seed": 0}
_DEFAULT_MODEL = {
    True: ("river.tree.HoeffdingTreeClassifier", {"grace_period": 50}, False),
    False: ("river.linear_model.LinearRegression", {}, True),
}
# Exact types the artifacts of the models that round-trip hold beyond skops' defaults, found by
# saving each (with and without a scaler) and asking `skops.io.get_untrusted_types`; anything
# else, even inside river, is refused. No function is needed, so none is trusted. (GaussianNB,
# KNN*, LogisticRegression and HoeffdingTreeRegressor do not survive a save/load in this river
# version, so their types are left out.)
_MODELS = (
    "river.linear_model.lin_reg.LinearRegression",
    "river.tree.extremely_fast_decision_tree.ExtremelyFastDecisionTreeClassifier",
    "river.tree.hoeffding_tree_classifier.HoeffdingTreeClassifier",
)
_TRUSTED_TYPES = frozenset(
    {
        *_MODELS,
        "builtins.frozenset",
        "collections.Counter",
        "random.Random",
        "river._river_rust.vectordict.VectorDict",
        "river.compose.pipeline.Pipeline",
        "river.optim.initializers.Zeros",
        "river.optim.losses.Squared",
        "river.optim.schedulers.Constant",
        "river.optim.sgd.SGD",
        "river.preprocessing.scale.StandardScaler",
        "river.proba.gaussian.Gaussian",
        "river.stats.mean.Mean",
        "river.stats.var.Var",
        "river.tree.nodes.branch.NumericBinaryBranch",
        "river.tree.nodes.efdtc_nodes.EFDTLeafNaiveBayesAdaptive",
        "river.tree.nodes.efdtc_nodes.EFDTNumericBinaryBranch",
        "river.tree.nodes.htc_nodes.LeafNaiveBayesAdaptive",
        "river.tree.splitter.gaussian_splitter.GaussianSplitter",
    }
)


class RiverAdapter(AdapterBase):
    """A river model learning one row at a time (default ``HoeffdingTreeClassifier`` /
    scaled ``LinearRegression``).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 2)); y = (X[:, 0] > 0).astype(int)
        >>> m = RiverAdapter(); m.build({}, n_features=2, classes=[0, 1])
        >>> _ = m.fit(X, y, budget=Budget(max_epochs=1))
        >>> m.evaluate(X, y)["accuracy"] > 0.8
        True
        >>> RiverAdapter.load(m.save()).predict(X[:3]).tolist() == m.predict(X[:3]).tolist()
        True
    """

    framework = "river"

    def __init__(self) -> None:
        super().__init__()
        self._model: Any = None
        self._fitted = False

    def build(self, params: dict[str, Any], n_features: int, classes: Sequence[Any] | None) -> None:
        p = self._merge_params(params, _DEFAULTS)
        if p["model"] is None:
            p["model"], kwargs, scale = _DEFAULT_MODEL[classes is not None]
            p["model_params"] = {**kwargs, **p["model_params"]}
            p["scale"] = scale if p["scale"] is None else p["scale"]
        self._params = p
        self._n_features = int(n_features)
        self._classes = None if classes is None else [_plain(c) for c in classes]
        self._model = _make_model(p["model"], p["model_params"], bool(p["scale"]))
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
        if self._model is None:
            raise NotBuiltError("this river adapter has no model yet; call build(...) first")
        budget = budget or Budget(max_epochs=1)
        deadline = Deadline(budget.timeout_s)
        x = check_xy(X, y, self._n_features).astype(np.float64)
        warm, note = False, ""
        if warm_start is not None:
            if (
                isinstance(warm_start, RiverAdapter)
                and warm_start._fitted
                and (warm_start._params["model"] == self._params["model"])
            ):
                self._model, self._fitted, warm = copy.deepcopy(warm_start._model), True, True
                note = "continued learning from the parent model"
            else:
                note = "parent is not a fitted river model of the same kind; from scratch"
        metric = budget.metric or ("accuracy" if self._classes is not None else "mse")
        start = self._val_metric(validation, metric)
        targets = [self._encode(v) for v in y]
        names = [str(i) for i in range(self._n_features)]
        history: list[float] = []
        stopped, epochs = "epochs", 0
        while epochs < budget.max_epochs:
            for i, row in enumerate(x):
                self._model.learn_one(dict(zip(names, row.tolist(), strict=True)), targets[i])
                if i % 1024 == 0:
                    deadline.check()
            self._fitted, epochs = True, epochs + 1
            current = self._val_metric(validation, metric)
            if current is not None:
                history.append(current)
            if budget.max_seconds is not None and deadline.elapsed > budget.max_seconds:
                stopped = "max_seconds"
                break
        train = self.evaluate(x, np.asarray(y))
        loss = 1.0 - train["accuracy"] if self._classes is not None else train["mse"]
        return FitReport(
            epochs=epochs,
            loss=loss,
            seconds=deadline.elapsed,
            stopped=stopped,
            warm_started=warm,
            note=note,
            start_metric=start,
            history=tuple(history),
        )

    def _encode(self, label: Any) -> Any:
        if self._classes is None:
            return float(label)
        return f"c{self._classes.index(_plain(label))}"

    def _val_metric(self, val: tuple[np.ndarray, np.ndarray] | None, metric: str) -> float | None:
        if val is None or len(val[1]) == 0 or not self._fitted:
            return None
        return self.evaluate(val[0], val[1]).get(metric)

    def _rows(self, X: np.ndarray) -> list[dict[str, float]]:
        x = check_xy(X, None, self._n_features).astype(np.float64)
        names = [str(i) for i in range(self._n_features)]
        return [dict(zip(names, row.tolist(), strict=True)) for row in x]

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not self._fitted:
            raise NotBuiltError("this river model has not learned anything; call fit(...) first")
        out = [self._model.predict_one(r) for r in self._rows(X)]
        if self._classes is None:
            return np.asarray([0.0 if v is None else v for v in out], dtype=np.float64)
        classes = self._classes
        return np.asarray([classes[int(v[1:])] if v else classes[0] for v in out])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self._fitted or self._classes is None:
            raise AdapterError("predict_proba needs a fitted river classifier")
        rows = [self._model.predict_proba_one(r) for r in self._rows(X)]
        codes = [f"c{i}" for i in range(len(self._classes))]
        return np.asarray([[p.get(c, 0.0) for c in codes] for p in rows], dtype=np.float64)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return metrics(self._classes, np.asarray(y), self.predict(X))

    def save(self) -> bytes:
        if not self._fitted:
            raise NotBuiltError("this river model has not learned anything; call fit(...) first")
        return dump_artifact(self.framework, self._description(), model=self._model)

    @classmethod
    def load(cls, data: bytes) -> Self:
        doc = load_artifact(
            data,
            cls.framework,
            _TRUSTED_TYPES,
            "the supported river models",
        )
        meta = doc["meta"]
        out = cls()
        out._params, out._classes = meta["params"], meta["classes"]
        out._n_features, out._model, out._fitted = meta["n_features"], doc["model"], True
        return out


def _make_model(path: str, kwargs: dict[str, Any], scale: bool) -> Any:
    module_name, _, name = path.rpartition(".")
    if not path.startswith("river.") or not module_name:
        raise AdapterError(
            f"model {path!r} is not a river class path such as "
            "'river.tree.HoeffdingTreeClassifier'; wrap other libraries in your own adapter"
        )
    try:
        model = getattr(importlib.import_module(module_name), name)(**kwargs)
    except (ImportError, AttributeError, TypeError) as exc:
        raise AdapterError(f"cannot build river model {path!r} with {kwargs}: {exc}") from None
    if scale:
        from river import preprocessing

        return preprocessing.StandardScaler() | model
    return model


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
