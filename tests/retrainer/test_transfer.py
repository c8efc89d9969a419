"""Parent choice on a stand-in store: every branch of similar -> champion -> scratch."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.config.pipeline import ModelConfig
from driftline.lifecycle_store import DataVersion, ModelVersion, SimilarLifecycle
from driftline.retrainer.adapters import Budget, make_adapter
from driftline.retrainer.transfer import choose_parent


def _model_bytes() -> bytes:
    m = make_adapter("torch-mlp")
    m.build({"hidden": [4]}, 2, [0, 1])
    x = np.random.default_rng(0).normal(size=(40, 2))
    m.fit(x, (x[:, 0] > 0).astype(int), budget=Budget(max_epochs=1))
    return bytes(m.save())


ARTIFACT = _model_bytes()


def dv(i: str) -> DataVersion:
    return DataVersion(i, "p", "h", "file:///x", 10, (), None, None, None, "root", (), 8, {}, None)


def mv(i: str, data: str, framework: str = "torch-mlp", version: int = 1) -> ModelVersion:
    return ModelVersion(i, "p", version, "h", "u", 1, framework, {}, {}, data, None, None, None)


class FakeStore:
    def __init__(self, similar: list[SimilarLifecycle], broken: set[str] | None = None) -> None:
        self.similar = similar
        self.broken = broken or set()
        self.calls: list[dict[str, Any]] = []

    def most_similar(self, pipeline: str, query: str, k: int, **kw: Any) -> list[SimilarLifecycle]:
        self.calls.append({"query": query, "k": k, **kw})
        return self.similar

    def load_model_artifact(self, model_version_id: str) -> bytes:
        if model_version_id in self.broken:
            raise OSError("artifact store unreachable")
        return ARTIFACT


def lifecycle(data: str, sim: float, model: ModelVersion | None) -> SimilarLifecycle:
    return SimilarLifecycle(dv(data), sim, () if model is None else (model,), model)


def test_most_similar_model_wins_and_says_why() -> None:
    store = FakeStore(
        [
            lifecycle("dv-new-neighbour", 0.99, None),  # no model trained on it: passed over
            lifecycle("dv-a", 0.9, mv("mv-a", "dv-a")),
            lifecycle("dv-b", 0.4, mv("mv-b", "dv-b")),
        ]
    )
    champion = mv("mv-b", "dv-b", version=2)
    choice = choose_parent(store, "p", "dv-q", ModelConfig(), champion, metric="accuracy")
    assert choice.source == "similar" and choice.model_version_id == "mv-a"
    assert choice.data_version_id == "dv-a" and choice.similarity == 0.9
    assert "similarity 0.900" in choice.reason and "dv-b 0.400" in choice.reason
    assert choice.adapter is not None and choice.adapter.n_features == 2
    assert choice.without_adapter().adapter is None
    call = store.calls[0]
    assert call["exclude"] == ("dv-q",) and call["metric"] == "accuracy"


def test_unlike_anything_seen_trains_from_scratch() -> None:
    store = FakeStore([lifecycle("dv-a", 0.01, mv("mv-a", "dv-a"))])
    choice = choose_parent(store, "p", "dv-q", ModelConfig(), mv("mv-a", "dv-a"))
    assert choice.source == "scratch" and "min_similarity" in choice.reason
    relaxed = choose_parent(store, "p", "dv-q", ModelConfig(min_similarity=0.0), None)
    assert relaxed.source == "similar"


def test_fallbacks_to_champion_then_scratch() -> None:
    other = FakeStore(
        [
            lifecycle("dv-a", 0.9, mv("mv-a", "dv-a", framework="sklearn")),
            lifecycle("dv-b", 0.8, mv("mv-b", "dv-b")),
        ],
        broken={"mv-b"},
    )
    champion = mv("mv-c", "dv-c", version=3)
    choice = choose_parent(other, "p", "dv-q", ModelConfig(), champion)
    assert choice.source == "champion" and choice.model_version_id == "mv-c"
    assert "'sklearn'" in choice.reason and "could not be loaded" in choice.reason
    assert choose_parent(other, "p", "dv-q", ModelConfig(), None).source == "scratch"
    empty = FakeStore([])
    assert "no past data" in choose_parent(empty, "p", "dv-q", ModelConfig(), champion).reason
    by_config = choose_parent(empty, "p", "dv-q", ModelConfig(warm_start="champion"), champion)
    assert by_config.source == "champion" and empty.calls == [
        {"query": "dv-q", "k": 5, "exclude": ("dv-q",), "metric": None, "higher_is_better": True}
    ]
    none = choose_parent(empty, "p", "dv-q", ModelConfig(warm_start="none"), champion)
    assert none.source == "scratch" and "warm_start='none'" in none.reason
