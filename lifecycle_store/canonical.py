"""Canonical content of an Arrow table: its hash, its feature matrix, its summary statistics.

The hash covers column names, types, null positions and values, in row order, and nothing
else: schema metadata, chunking, slicing and whatever bytes sit under null slots do not
change it. So the same rows give the same data version id whoever wrote them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.lifecycle_store.exceptions import SchemaMismatchError

__all__ = [
    "canonical_table",
    "check_feature_columns",
    "content_hash",
    "feature_matrix",
    "feature_stats",
    "profile_bytes",
]

_HASH_VERSION = b"driftline-table-v1"
# Keeps log(std) finite for constant features.
PROFILE_EPS = 1e-9


def canonical_table(table: pa.Table) -> pa.Table:
    """``table`` without schema or field metadata and in one chunk per column."""
    schema = pa.schema([pa.field(f.name, f.type, f.nullable) for f in table.schema])
    return table.cast(schema).replace_schema_metadata(None).combine_chunks()


def content_hash(table: pa.Table) -> str:
    """The sha256 hex of ``table``'s canonical content.

    >>> a = pa.table({"x": [1.0, 2.0, None]})
    >>> b = pa.concat_tables([a.slice(0, 1), a.slice(1)]).replace_schema_metadata({"k": "v"})
    >>> content_hash(a) == content_hash(b)
    True
    >>> content_hash(a) == content_hash(pa.table({"x": [1.0, 2.0, 3.0]}))
    False
    """
    h = hashlib.sha256(_HASH_VERSION)
    h.update(len(table).to_bytes(8, "little"))
    for field, column in zip(table.schema, table.columns, strict=True):
        h.update(f"{field.name}\0{field.type}\0".encode())
        _hash_column(h, column)
    return h.hexdigest()


def _hash_column(h: Any, column: pa.ChunkedArray) -> None:
    arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(arr, pa.ChunkedArray):  # an empty column combines to no chunk at all
        arr = pa.array([], type=column.type)
    if arr.null_count:
        h.update(b"v")
        h.update(np.packbits(arr.is_valid().to_numpy(zero_copy_only=False)).tobytes())
        arr = pc.drop_null(arr)
    else:
        h.update(b"n")
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t)) and not (
        pa.types.is_interval(t)
    ):
        h.update(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).view(np.uint8))
    elif pa.types.is_boolean(t):
        h.update(np.packbits(arr.to_numpy(zero_copy_only=False)).tobytes())
    elif pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t):
        _hash_binary(h, arr.cast(pa.large_binary()))
    elif pa.types.is_large_binary(t):
        _hash_binary(h, arr)
    else:
        # Rare types (nested, decimal): slower, but still canonical.
        h.update(repr(arr.to_pylist()).encode())


def _hash_binary(h: Any, arr: pa.Array) -> None:
    offsets_buf, data_buf = arr.buffers()[1], arr.buffers()[2]
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    if len(offsets) == 0:
        return
    h.update(np.diff(offsets).tobytes())
    if data_buf is not None:
        h.update(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])])


def check_feature_columns(table: pa.Table, feature_names: Sequence[str], what: str) -> None:
    """Raise :class:`SchemaMismatchError` naming missing or non-numeric feature columns."""
    missing = [f for f in feature_names if f not in table.column_names]
    if missing:
        raise SchemaMismatchError(
            f"{what} lacks feature columns {missing} (it has {table.column_names}); "
            "add them or snapshot into the pipeline whose features these are"
        )
    for name in feature_names:
        column_type = table.schema.field(name).type
        if not (pa.types.is_floating(column_type) or pa.types.is_integer(column_type)):
            raise SchemaMismatchError(
                f"{what}: feature column {name!r} has type {column_type}; features must be "
                "numeric (cast it to float64)"
            )


def feature_matrix(table: pa.Table, feature_names: Sequence[str]) -> np.ndarray:
    """The feature columns of ``table`` as a float64 matrix, one row per row (nulls are NaN).

    >>> feature_matrix(pa.table({"a": [1, 2], "b": [0.5, None]}), ["b", "a"]).tolist()
    [[0.5, 1.0], [nan, 2.0]]
    """
    x = np.empty((len(table), len(feature_names)))
    for j, name in enumerate(feature_names):
        x[:, j] = table.column(name).to_numpy()
    return x


def feature_stats(
    table: pa.Table, feature_names: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """Per-feature ``count``, ``nulls``, ``mean``, ``std``, ``min``, ``max`` (NaN is a null).

    >>> feature_stats(pa.table({"a": [1.0, 3.0, None]}), ["a"])["a"]["mean"]
    2.0
    """
    stats: dict[str, dict[str, float | None]] = {}
    for name in feature_names:
        column = table.column(name)
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            column = pc.drop_null(pc.if_else(pc.is_nan(column), None, column))
        n = pc.count(column).as_py()
        bounds = pc.min_max(column)
        stats[name] = {
            "count": n,
            "nulls": len(table) - n,
            "mean": _num(pc.mean(column).as_py()),
            "std": _num(pc.stddev(column, ddof=0).as_py()),
            "min": _num(bounds["min"].as_py()),
            "max": _num(bounds["max"].as_py()),
        }
    return stats


def profile_bytes(stats: dict[str, dict[str, float | None]], feature_names: Sequence[str]) -> bytes:
    """Each feature's mean, then each feature's log std, as little-endian float64 bytes.

    A compact vector per data version that similarity search shortlists by (nulls count 0).

    >>> np.frombuffer(profile_bytes({"a": {"mean": 2.0, "std": 1.0}}, ["a"]), "<f8").round(6)
    array([2., 0.])
    """
    means = [(stats.get(f) or {}).get("mean") or 0.0 for f in feature_names]
    stds = [(stats.get(f) or {}).get("std") or 0.0 for f in feature_names]
    return np.concatenate([means, np.log(np.asarray(stds) + PROFILE_EPS)]).astype("<f8").tobytes()


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None
