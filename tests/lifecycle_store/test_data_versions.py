from __future__ import annotations

import pathlib
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline.detectors.coreset import Coreset
from driftline.lifecycle_store import (
    ArtifactCorruptedError,
    LifecycleStore,
    NotFoundError,
    SchemaMismatchError,
    StoreError,
)

Rows = Callable[..., pa.Table]


def _files(store: LifecycleStore) -> list[str]:
    root = store.artifacts.uri("x").removeprefix("file://").removesuffix("/x")
    return sorted(str(p) for p in pathlib.Path(root).rglob("*.parquet"))


def test_snapshot_roundtrip_is_exact(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    table = rows(500)
    dv = store.snapshot(pipeline, table, source_offsets={"demo.inputs/0": [0, 499]})
    back = store.read_data_version(dv.id)
    assert back.equals(table)
    assert back.schema.equals(table.schema)
    assert dv.id.startswith("dv-") and dv.row_count == 500 and dv.combine == "root"
    assert dv.event_time_min == datetime(2024, 1, 1, tzinfo=UTC)
    assert (dv.event_time_max - dv.event_time_min).total_seconds() == 499
    assert dv.source_offsets == {"demo.inputs/0": [0, 499]}
    assert ("f0", "double") in dv.feature_schema
    x0 = table.column("f0").to_numpy()
    assert dv.stats["f0"]["mean"] == pytest.approx(x0.mean())
    assert dv.stats["f0"]["std"] == pytest.approx(x0.std())
    coreset = store.data_version_coreset(dv.id)
    assert isinstance(coreset, Coreset) and coreset.n_seen == 500
    assert coreset.points.shape[1] == 3
    assert store.data_version(dv.id) == dv


def test_same_rows_same_version_stored_once(
    store: LifecycleStore, pipeline: str, rows: Rows
) -> None:
    table = rows(300)
    first = store.snapshot(pipeline, table)
    rechunked = pa.concat_tables([table.slice(0, 100), table.slice(100)]).replace_schema_metadata(
        {"writer": "other"}
    )
    second = store.snapshot(pipeline, rechunked, coreset_k=8)
    assert second == first
    assert len(store.data_versions(pipeline)) == 1
    assert len(_files(store)) == 1
    different = store.snapshot(pipeline, rows(300, seed=1))
    assert different.id != first.id and len(store.data_versions(pipeline)) == 2


def test_parents_and_combine(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    a = store.snapshot(pipeline, rows(50))
    b = store.snapshot(pipeline, rows(50, start=50))
    merged = store.snapshot(
        pipeline,
        pa.concat_tables([rows(50), rows(50, start=50)]),
        parents=[a.id, b.id],
        combine="append",
    )
    assert merged.parents == (a.id, b.id) and merged.combine == "append"
    assert merged.event_time_min == datetime(2024, 1, 1, tzinfo=UTC)
    window = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
    filtered = store.snapshot(
        pipeline, rows(10, seed=7), parents=[merged.id], combine="filter", event_time_range=window
    )
    assert (filtered.event_time_min, filtered.event_time_max) == window
    assert store.data_version(merged.id).parents == (a.id, b.id)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"combine": "union"}, StoreError, "combine must be one of"),
        ({"combine": "append"}, StoreError, "combine='root' exactly"),
        ({"parents": ["dv-nope"], "combine": "filter"}, NotFoundError, "dv-nope"),
        ({"coreset_k": 0}, StoreError, "coreset_k"),
        ({"source_offsets": [1, 2]}, StoreError, "source_offsets must be a dict"),
        (
            {"event_time_range": (datetime(2024, 2, 1), datetime(2024, 1, 1))},
            StoreError,
            "in order",
        ),
    ],
)
def test_bad_snapshot_arguments_change_nothing(
    store: LifecycleStore, pipeline: str, rows: Rows, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        store.snapshot(pipeline, rows(20), **kwargs)
    assert store.data_versions(pipeline) == []
    assert _files(store) == []


def test_schema_mismatch_changes_nothing(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    with pytest.raises(SchemaMismatchError, match=r"\['f2'\]"):
        store.snapshot(pipeline, rows(20).drop_columns(["f2"]))
    with pytest.raises(SchemaMismatchError, match="'f1' has type string"):
        t = rows(5)
        store.snapshot(pipeline, t.set_column(3, "f1", pa.array(["x"] * 5)))
    with pytest.raises(StoreError, match=r"pyarrow\.Table"):
        store.snapshot(pipeline, {"f0": [1.0]})  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="'nope'"):
        store.snapshot("nope", rows(5))
    assert store.data_versions(pipeline) == [] and _files(store) == []


def test_nulls_and_empty_tables(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    t = rows(40)
    f1 = t.column("f1").to_numpy().copy()
    t = t.set_column(3, "f1", pa.array(f1, mask=np.arange(40) % 4 == 0))
    dv = store.snapshot(pipeline, t)
    assert dv.stats["f1"]["nulls"] == 10
    assert store.data_version_coreset(dv.id).n_seen == 30  # type: ignore[union-attr]
    assert store.read_data_version(dv.id).equals(t)
    empty = store.snapshot(pipeline, t.slice(0, 0))
    assert empty.row_count == 0 and store.data_version_coreset(empty.id) is None
    assert empty.event_time_min is None


def test_corrupted_data_version(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    table = rows(100)
    dv = store.snapshot(pipeline, table)
    assert store.read_data_version(dv.id, verify=True).equals(table)
    path = pathlib.Path(dv.artifact_uri.removeprefix("file://"))
    tampered = table.set_column(2, "f0", pa.array(np.zeros(100)))
    pq.write_table(tampered, path)
    assert store.read_data_version(dv.id).equals(tampered)  # unverified read trusts the file
    with pytest.raises(ArtifactCorruptedError, match="no longer hashes"):
        store.read_data_version(dv.id, verify=True)
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ArtifactCorruptedError, match="cannot be read"):
        store.read_data_version(dv.id)


def test_unknown_ids(store: LifecycleStore) -> None:
    with pytest.raises(NotFoundError, match="dv-missing"):
        store.data_version("dv-missing")
    with pytest.raises(NotFoundError, match="dv-missing"):
        store.read_data_version("dv-missing")
