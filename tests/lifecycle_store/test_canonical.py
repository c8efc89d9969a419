from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.lifecycle_store import SchemaMismatchError
from driftline.lifecycle_store.canonical import (
    canonical_table,
    check_feature_columns,
    content_hash,
    feature_matrix,
    feature_stats,
)


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(["a", None, "ccc", ""]),
            "x": pa.array([1.5, None, 3.0, -0.0]),
            "n": pa.array([1, 2, None, 4], pa.int32()),
            "b": pa.array([True, False, None, True]),
            "ts": pa.array([0, 1, 2, None], pa.timestamp("us", tz="UTC")),
        }
    )


def test_hash_ignores_chunking_slicing_and_metadata() -> None:
    t = _table()
    rechunked = pa.concat_tables([t.slice(0, 1), t.slice(1, 2), t.slice(3)])
    sliced = pa.concat_tables([t, t]).slice(4, 4)
    with_meta = t.replace_schema_metadata({"pandas": "{}", "writer": "someone"})
    digests = {content_hash(x) for x in (t, rechunked, sliced, with_meta, canonical_table(t))}
    assert len(digests) == 1


def test_hash_ignores_bytes_under_nulls() -> None:
    clean = pa.array([1.0, None, 3.0])
    values = pa.py_buffer(np.array([1.0, 99.0, 3.0]).tobytes())
    dirty = pa.Array.from_buffers(pa.float64(), 3, [clean.buffers()[0], values])
    assert content_hash(pa.table({"x": clean})) == content_hash(pa.table({"x": dirty}))


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.set_column(1, "x", pa.array([1.5, None, 3.0, 0.1])),
        lambda t: t.set_column(0, "id", pa.array(["a", None, "cc", "c"])),
        lambda t: t.set_column(0, "id", pa.array(["a", "", "ccc", ""])),
        lambda t: t.rename_columns(["id", "y", "n", "b", "ts"]),
        lambda t: t.select(["x", "id", "n", "b", "ts"]),
        lambda t: t.set_column(2, "n", t.column("n").cast(pa.int64())),
        lambda t: t.take([1, 0, 2, 3]),
        lambda t: t.slice(0, 3),
    ],
)
def test_hash_changes_with_content(change: object) -> None:
    t = _table()
    assert content_hash(change(t)) != content_hash(t)  # type: ignore[operator]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=False)), min_size=1, max_size=30),
    st.integers(0, 29),
)
def test_hash_is_chunking_invariant_for_any_data(values: list[float | None], cut: int) -> None:
    t = pa.table({"v": pa.array(values, pa.float64()), "s": [str(v) for v in values]})
    cut = min(cut, len(t))
    split = pa.concat_tables([t.slice(0, cut), t.slice(cut)])
    assert content_hash(split) == content_hash(t)


def test_feature_matrix_and_errors() -> None:
    t = pa.table({"a": [1, 2], "b": [0.5, None], "s": ["x", "y"]})
    check_feature_columns(t, ["b", "a"], "t")
    x = feature_matrix(t, ["b", "a"])
    assert x.shape == (2, 2) and x[0, 0] == 0.5 and np.isnan(x[1, 0]) and x[1, 1] == 2.0
    with pytest.raises(SchemaMismatchError, match=r"\['c'\]"):
        check_feature_columns(t, ["a", "c"], "t")
    with pytest.raises(SchemaMismatchError, match="'s' has type string"):
        check_feature_columns(t, ["s"], "t")


def test_feature_stats_skip_nulls_and_nans() -> None:
    t = pa.table(
        {
            "a": pa.array([1.0, 3.0, 5.0, None, float("nan")]),
            "b": pa.array([None] * 5, pa.float64()),
            "n": pa.array([1, 2, 3, 4, 5]),
        }
    )
    stats = feature_stats(t, ["a", "b", "n"])
    assert stats["a"] == {
        "count": 3,
        "nulls": 2,
        "mean": 3.0,
        "std": pytest.approx(np.std([1, 3, 5])),
        "min": 1.0,
        "max": 5.0,
    }
    assert stats["b"]["nulls"] == 5 and stats["b"]["mean"] is None and stats["b"]["max"] is None
    assert stats["n"]["mean"] == 3.0 and stats["n"]["max"] == 5.0
