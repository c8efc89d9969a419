from __future__ import annotations

import pathlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from driftline.lifecycle_store import (
    ArtifactCorruptedError,
    LifecycleStore,
    NotFoundError,
    StoreError,
)

Rows = Callable[..., pa.Table]


@pytest.fixture
def dv_id(store: LifecycleStore, pipeline: str, rows: Rows) -> str:
    return store.snapshot(pipeline, rows(50)).id


def _register(store: LifecycleStore, pipeline: str, dv_id: str, blob: bytes, **kw: object):
    return store.register_model(
        pipeline,
        blob,
        framework="torch",
        params={"hidden": 16},
        metrics={"acc": 0.8},
        data_version_id=dv_id,
        **kw,  # type: ignore[arg-type]
    )


def test_register_and_load(store: LifecycleStore, pipeline: str, dv_id: str) -> None:
    mv = _register(store, pipeline, dv_id, b"weights-1")
    assert mv.version == 1 and mv.data_version_id == dv_id and mv.size_bytes == 9
    assert len(mv.content_hash) == 64 and mv.artifact_uri.startswith("file://")
    assert store.load_model_artifact(mv.id) == b"weights-1"
    assert store.model_version(mv.id) == mv
    again = _register(store, pipeline, dv_id, b"weights-1")
    assert again == mv
    child = _register(store, pipeline, dv_id, b"weights-2", parent_model_version_id=mv.id)
    assert child.version == 2 and child.parent_model_version_id == mv.id
    assert [m.version for m in store.model_versions(pipeline)] == [2, 1]
    assert store.model_versions(pipeline, data_version_id="dv-other") == []


def test_corrupted_artifact_is_detected(store: LifecycleStore, pipeline: str, dv_id: str) -> None:
    mv = _register(store, pipeline, dv_id, b"good weights")
    path = pathlib.Path(mv.artifact_uri.removeprefix("file://"))
    path.write_bytes(b"evil weights")
    with pytest.raises(ArtifactCorruptedError, match=mv.id) as info:
        store.load_model_artifact(mv.id)
    assert mv.content_hash in str(info.value)
    path.unlink()
    with pytest.raises(NotFoundError, match="does not exist"):
        store.load_model_artifact(mv.id)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"data_version_id": "dv-nope"}, NotFoundError, "dv-nope"),
        ({"parent_model_version_id": "mv-nope"}, NotFoundError, "mv-nope"),
        ({"training_id": "tr-nope"}, NotFoundError, "tr-nope"),
        ({"framework": ""}, StoreError, "framework"),
        ({"metrics": [0.5]}, StoreError, "metrics must be a dict"),
    ],
)
def test_bad_registrations_change_nothing(
    store: LifecycleStore, pipeline: str, dv_id: str, kwargs: dict, error: type, match: str
) -> None:
    args = {"framework": "torch", "params": {}, "metrics": {}, "data_version_id": dv_id, **kwargs}
    with pytest.raises(error, match=match):
        store.register_model(pipeline, b"blob", **args)
    assert store.model_versions(pipeline) == []
    with pytest.raises(NotFoundError, match="mv-unknown"):
        store.model_version("mv-unknown")


def test_concurrent_registrations_get_distinct_versions(
    open_store: Callable[[], LifecycleStore], store: LifecycleStore, pipeline: str, dv_id: str
) -> None:
    stores = [open_store() for _ in range(4)]

    def register(i: int) -> int:
        return _register(stores[i % 4], pipeline, dv_id, f"blob-{i}".encode()).version

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(register, range(8)))
    assert sorted(versions) == list(range(1, 9))
