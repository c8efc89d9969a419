"""One contract suite over every model adapter, plus what is specific to the torch MLP."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.retrainer.adapters import (
    Budget,
    adapter_class,
    load_adapter,
    make_adapter,
    register_adapter,
)
from driftline.retrainer.adapters.torch_mlp import TorchMLP
from driftline.retrainer.exceptions import (
    AdapterError,
    ArtifactFormatError,
    NotBuiltError,
    TrainingDivergedError,
    TrainingTimeoutError,
    UnknownAdapterError,
    WarmStartError,
)

ADAPTERS = ["torch-mlp", "sklearn", "river"]
EPOCHS = {"torch-mlp": 15, "sklearn": 10, "river": 1}


def blobs(n: int, seed: int, classes: int = 3, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(scale=3.0, size=(classes, d))
    y = rng.integers(classes, size=n)
    return centers[y] + rng.normal(size=(n, d)), y


def linear(n: int, seed: int, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, x @ np.arange(1.0, d + 1) + 0.1 * rng.normal(size=n)


def fitted(name: str, x: np.ndarray, y: np.ndarray, classes: list[int] | None) -> object:
    m = make_adapter(name)
    m.build({}, x.shape[1], classes)
    m.fit(x, y, budget=Budget(max_epochs=EPOCHS[name], patience=None))
    return m


@pytest.mark.parametrize("name", ADAPTERS)
def test_classifier_learns_and_round_trips(name: str) -> None:
    x, y = blobs(600, 0)
    xt, yt = blobs(300, 1)
    m = fitted(name, x, y, [0, 1, 2])
    acc = m.evaluate(xt, yt)["accuracy"]
    assert acc > 0.9
    proba = m.predict_proba(xt[:20])
    assert proba.shape == (20, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    art = m.save()
    assert isinstance(art, bytes) and b"\x80\x04" not in art[:2]  # not a pickle stream
    back = load_adapter(name, art)
    assert back.predict(xt).tolist() == m.predict(xt).tolist()
    assert back.classes == [0, 1, 2] and back.n_features == 4
    assert back.params == m.params


@pytest.mark.parametrize("name", ADAPTERS)
def test_regressor_learns(name: str) -> None:
    x, y = linear(800, 0)
    xt, yt = linear(300, 1)
    m = fitted(name, x, y, None)
    metrics = m.evaluate(xt, yt)
    assert metrics["r2"] > 0.8, metrics
    assert load_adapter(name, m.save()).predict(xt[:5]) == pytest.approx(m.predict(xt[:5]))


@pytest.mark.parametrize("name", ADAPTERS)
def test_warm_start_begins_from_the_parent(name: str) -> None:
    x, y = blobs(600, 0)
    xv, yv = blobs(200, 2)
    parent = load_adapter(name, fitted(name, x, y, [0, 1, 2]).save())
    x2, y2 = blobs(30, 3)
    warm = make_adapter(name)
    warm.build({}, 4, [0, 1, 2])
    report = warm.fit(x2, y2, warm_start=parent, budget=Budget(max_epochs=1), validation=(xv, yv))
    assert report.warm_started
    # Scored before the first epoch on the new rows: the parent's skill carried over.
    assert report.start_metric is not None and report.start_metric > 0.9
    assert warm.evaluate(xv, yv)["accuracy"] > 0.9
    cold = make_adapter(name)
    cold.build({}, 4, [0, 1, 2])
    assert not cold.fit(x2, y2, budget=Budget(max_epochs=1)).warm_started


@pytest.mark.parametrize("name", ADAPTERS)
def test_unbuilt_and_foreign_artifacts_are_refused(name: str) -> None:
    with pytest.raises(NotBuiltError):
        make_adapter(name).predict(np.zeros((1, 4)))
    other = next(a for a in ADAPTERS if a != name)
    x, y = blobs(200, 0)
    with pytest.raises(ArtifactFormatError):
        load_adapter(name, fitted(other, x, y, [0, 1, 2]).save())
    with pytest.raises(ArtifactFormatError):
        load_adapter(name, b"not a model")


@pytest.mark.parametrize("name", ADAPTERS)
def test_bad_input_names_the_problem(name: str) -> None:
    m = make_adapter(name)
    with pytest.raises(AdapterError, match="unknown"):
        m.build({"no_such_param": 1}, 4, [0, 1])
    m.build({}, 4, [0, 1])
    with pytest.raises(AdapterError, match=r"\(n, 4\)"):
        m.fit(np.zeros((10, 3)), np.zeros(10))


def test_torch_warm_start_maps_output_rows_by_class_label() -> None:
    x, y = blobs(600, 0, classes=3)
    parent = fitted("torch-mlp", x, y, [0, 1, 2])
    child = TorchMLP()
    # A new class 7 appears, and the classes reorder: rows must follow the labels.
    child.build({}, 4, [0, 1, 2, 7])
    child._copy_from(parent)
    xt, yt = blobs(300, 1, classes=3)
    p_parent = parent.predict_proba(xt)
    p_child = child.predict_proba(xt)
    # Before any training, the child ranks the old classes exactly as the parent did.
    assert (p_child[:, :3].argmax(axis=1) == p_parent.argmax(axis=1)).all()
    assert child.evaluate(xt, yt)["accuracy"] > 0.9


def test_torch_warm_start_needs_same_architecture() -> None:
    x, y = blobs(200, 0)
    parent = fitted("torch-mlp", x, y, [0, 1, 2])
    child = TorchMLP()
    child.build({"hidden": [8]}, 4, [0, 1, 2])
    with pytest.raises(WarmStartError, match="hidden"):
        child.fit(x, y, warm_start=parent, budget=Budget(max_epochs=1))


def test_torch_divergence_raises() -> None:
    x, y = linear(400, 0)
    m = TorchMLP()
    m.build({"hidden": [32]}, 4, None)
    m._net[0].weight.data[0, 0] = float("nan")  # type: ignore[index]  # a poisoned weight
    with pytest.raises(TrainingDivergedError, match=r"lower model\.params\.lr"):
        m.fit(x, y, budget=Budget(max_epochs=20, patience=None))


def test_torch_timeout_raises_and_max_seconds_stops_gracefully() -> None:
    x, y = blobs(3000, 0)
    m = TorchMLP()
    m.build({"batch_size": 8}, 4, [0, 1, 2])
    with pytest.raises(TrainingTimeoutError, match="timeout_s"):
        m.fit(x, y, budget=Budget(max_epochs=1000, patience=None, timeout_s=0.2))
    m.build({"batch_size": 8}, 4, [0, 1, 2])
    report = m.fit(x, y, budget=Budget(max_epochs=1000, patience=None, max_seconds=0.2))
    assert report.stopped == "max_seconds" and 1 <= report.epochs < 1000


def test_torch_target_and_patience_stop_early() -> None:
    x, y = blobs(1000, 0)
    xv, yv = blobs(200, 1)
    m = TorchMLP()
    m.build({}, 4, [0, 1, 2])
    report = m.fit(x, y, budget=Budget(max_epochs=50, target=0.9), validation=(xv, yv))
    assert report.stopped == "target" and report.history[-1] >= 0.9 and report.epochs < 50
    m.build({}, 4, [0, 1, 2])
    report = m.fit(x, y, budget=Budget(max_epochs=200, patience=2), validation=(xv, yv))
    assert report.stopped == "patience" and report.epochs < 200


def test_torch_training_is_deterministic() -> None:
    x, y = blobs(400, 0)
    a = fitted("torch-mlp", x, y, [0, 1, 2])
    b = fitted("torch-mlp", x, y, [0, 1, 2])
    assert a.save() == b.save()


def test_string_labels() -> None:
    x, y = blobs(400, 0)
    names = np.array(["cat", "dog", "eel"])[y]
    m = make_adapter("torch-mlp")
    m.build({}, 4, ["cat", "dog", "eel"])
    m.fit(x, names, budget=Budget(max_epochs=10, patience=None))
    assert set(m.predict(x[:50]).tolist()) <= {"cat", "dog", "eel"}
    assert m.evaluate(x, names)["accuracy"] > 0.9


class _Constant:
    """A user adapter: predicts the most frequent training label."""

    framework = "tests.retrainer.test_adapters:_Constant"

    def build(self, params: dict, n_features: int, classes: list | None) -> None:
        self.value = None

    def fit(self, X, y, *, warm_start=None, budget=None, validation=None):  # type: ignore[no-untyped-def]
        vals, counts = np.unique(y, return_counts=True)
        self.value = vals[counts.argmax()]

    def predict(self, X):  # type: ignore[no-untyped-def]
        return np.full(len(X), self.value)

    def evaluate(self, X, y):  # type: ignore[no-untyped-def]
        return {"accuracy": float(np.mean(self.predict(X) == y))}

    def save(self) -> bytes:
        return str(self.value).encode()

    @classmethod
    def load(cls, data: bytes) -> _Constant:
        out = cls()
        out.value = int(data)
        return out


def test_registry_names_dotted_paths_and_errors() -> None:
    assert adapter_class("torch-mlp") is TorchMLP
    register_adapter("constant", _Constant)
    m = make_adapter("constant")
    m.build({}, 2, [0, 1])
    m.fit(np.zeros((3, 2)), np.array([1, 1, 0]))
    assert load_adapter("constant", m.save()).predict(np.zeros((2, 2))).tolist() == [1, 1]
    with pytest.raises(UnknownAdapterError, match="torch-mlp"):
        make_adapter("xgboost")
    with pytest.raises(UnknownAdapterError, match="cannot import"):
        make_adapter("no.such.module:Thing")
    with pytest.raises(UnknownAdapterError, match="does not implement"):
        register_adapter("bad", int)


SKLEARN_KINDS = [
    ("linear_model.SGDClassifier", True),
    ("linear_model.LogisticRegression", True),
    ("linear_model.Ridge", False),
    ("tree.DecisionTreeClassifier", True),
    ("ensemble.RandomForestClassifier", True),
    ("ensemble.RandomForestRegressor", False),
    ("ensemble.GradientBoostingClassifier", True),
    ("ensemble.HistGradientBoostingClassifier", True),
    ("ensemble.HistGradientBoostingRegressor", False),
    ("svm.SVC", True),
    ("neighbors.KNeighborsClassifier", True),
    ("neighbors.KNeighborsRegressor", False),
    ("naive_bayes.GaussianNB", True),
    ("neural_network.MLPClassifier", True),
    ("neural_network.MLPRegressor", False),
]
RIVER_KINDS = [
    ("tree.HoeffdingTreeClassifier", True),
    ("tree.ExtremelyFastDecisionTreeClassifier", True),
    ("linear_model.LinearRegression", False),
]


@pytest.mark.parametrize(
    "framework,path,classify",
    [("sklearn", f"sklearn.{p}", c) for p, c in SKLEARN_KINDS]
    + [("river", f"river.{p}", c) for p, c in RIVER_KINDS],
)
def test_every_supported_kind_round_trips_through_the_exact_allow_list(
    framework: str, path: str, classify: bool
) -> None:
    # the allow-lists name types exactly, so each kind must still load after a save
    x, y = blobs(600, 0, classes=3) if classify else linear(600, 0)
    key = "estimator" if framework == "sklearn" else "model"
    m = make_adapter(framework)
    m.build({key: path}, n_features=4, classes=[0, 1, 2] if classify else None)
    m.fit(x, y, budget=Budget(max_epochs=EPOCHS[framework], patience=None))
    back = load_adapter(framework, m.save())
    np.testing.assert_allclose(back.predict(x[:20]), m.predict(x[:20]))
