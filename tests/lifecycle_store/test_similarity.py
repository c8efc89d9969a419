from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from driftline.detectors.coreset import Coreset
from driftline.lifecycle_store import LifecycleStore, SchemaMismatchError, StoreError

Rows = Callable[..., pa.Table]


@pytest.fixture
def versions(store: LifecycleStore, pipeline: str, rows: Rows) -> dict[float, str]:
    """Data versions whose features are shifted by 0, 1, 2, 3, 4."""
    return {
        s: store.snapshot(pipeline, rows(400, seed=int(s), shift=s), coreset_k=32).id
        for s in (0.0, 1.0, 2.0, 3.0, 4.0)
    }


def test_ranks_by_distribution_distance(
    store: LifecycleStore, pipeline: str, versions: dict[float, str]
) -> None:
    query = Coreset.from_array(np.random.default_rng(9).normal(2.1, 1.0, size=(400, 3)), k=32)
    found = store.most_similar(pipeline, query, k=3)
    assert [f.data_version.id for f in found] == [versions[2.0], versions[3.0], versions[1.0]]
    scores = [f.similarity for f in found]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] < scores[0] <= 1
    assert all(f.best_model is None and f.model_versions == () for f in found)
    wide = store.most_similar(pipeline, query, k=5, candidates=5)
    assert [f.data_version.id for f in wide][:3] == [f.data_version.id for f in found]
    excluded = store.most_similar(pipeline, query, k=1, exclude=[versions[2.0]])
    assert excluded[0].data_version.id in (versions[1.0], versions[3.0])


def test_by_data_version_id_and_best_model(
    store: LifecycleStore, pipeline: str, versions: dict[float, str]
) -> None:
    target = versions[1.0]
    for i, acc in enumerate((0.7, 0.9, 0.8)):
        store.register_model(
            pipeline,
            f"m{i}".encode(),
            framework="torch",
            params={},
            metrics={"acc": acc, "loss": 1 - acc},
            data_version_id=target,
        )
    found = store.most_similar(pipeline, versions[0.0], k=2, metric="acc")
    assert found[0].data_version.id == target
    assert versions[0.0] not in [f.data_version.id for f in found]
    assert found[0].best_model is not None and found[0].best_model.metrics["acc"] == 0.9
    assert len(found[0].model_versions) == 3
    by_loss = store.most_similar(
        pipeline, versions[0.0], k=1, metric="loss", higher_is_better=False
    )
    assert by_loss[0].best_model.metrics["acc"] == 0.9  # type: ignore[union-attr]
    latest = store.most_similar(pipeline, versions[0.0], k=1)
    assert latest[0].best_model.version == 3  # type: ignore[union-attr]


def test_index_sees_new_versions(
    open_store: Callable[[], LifecycleStore], store: LifecycleStore, pipeline: str, rows: Rows
) -> None:
    query = Coreset.from_array(np.random.default_rng(3).normal(5.0, 1.0, size=(300, 3)), k=16)
    store.snapshot(pipeline, rows(200, seed=1), coreset_k=16)
    assert len(store.most_similar(pipeline, query, k=3)) == 1
    newer = open_store().snapshot(pipeline, rows(200, seed=2, shift=5.0), coreset_k=16)
    assert store.most_similar(pipeline, query, k=1)[0].data_version.id == newer.id


def test_bad_queries(store: LifecycleStore, pipeline: str, versions: dict[float, str]) -> None:
    with pytest.raises(SchemaMismatchError, match="2 features"):
        store.most_similar(pipeline, Coreset.from_array(np.zeros((10, 2)), k=4))
    with pytest.raises(StoreError, match="k must be"):
        store.most_similar(pipeline, versions[0.0], k=0)
    with pytest.raises(StoreError, match="Coreset or a data version id"):
        store.most_similar(pipeline, 42)  # type: ignore[arg-type]
