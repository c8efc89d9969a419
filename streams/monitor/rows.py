"""Rows: valid input rows as columns, the type every part of the monitor step passes on.

The codec makes them from messages, the step archives them (`Rows.to_table`) and feeds their
feature matrix to the detectors; a DriftEvent names the offsets and ids they carry.

>>> import numpy as np
>>> rows = Rows(("x",), strings(["a", "b"]), np.array([0, 1]), np.array([[1.0], [2.0]]),
...             strings(["p.inputs"] * 2), np.zeros(2, np.int32), np.array([7, 8]))
>>> len(rows), rows.take(np.array([1])).event_ids.to_pylist(), rows.to_table().column_names
(2, ['b'], ['event_id', 'timestamp', 'x', 'topic', 'partition', 'offset'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["TIMESTAMP_TYPE", "Rows", "strings"]

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


def strings(values: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """A string column: Python strings, or an Arrow column as it is (no per-row copy)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == pa.string() else values.cast(pa.string())
    return pa.array(values, pa.string())


@dataclass
class Rows:
    """Valid input rows as columns, in the order they arrived.

    The string columns are Arrow arrays, so rows from Arrow batches reach the archive without a
    per-row conversion; ``rows.event_ids[i].as_py()`` reads one.
    """

    feature_names: tuple[str, ...]
    event_ids: pa.Array
    timestamps_us: np.ndarray
    features: np.ndarray
    topics: pa.Array
    partitions: np.ndarray
    offsets: np.ndarray
    model_versions: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.event_ids)

    def take(self, index: np.ndarray) -> Rows:
        """The rows at ``index`` (positions or a boolean mask)."""
        idx = np.flatnonzero(index) if index.dtype == bool else index
        return Rows(
            self.feature_names,
            self.event_ids.take(idx),
            self.timestamps_us[idx],
            self.features[idx],
            self.topics.take(idx),
            self.partitions[idx],
            self.offsets[idx],
            None if self.model_versions is None else self.model_versions.take(idx),
        )

    def to_table(self) -> pa.Table:
        """The archive layout: event_id, timestamp, features, model_version, topic,
        partition, offset."""
        columns: dict[str, pa.Array] = {
            "event_id": self.event_ids,
            "timestamp": pa.array(self.timestamps_us, pa.int64()).cast(TIMESTAMP_TYPE),
        }
        for j, name in enumerate(self.feature_names):
            columns[name] = pa.array(self.features[:, j], pa.float64())
        if self.model_versions is not None:
            columns["model_version"] = self.model_versions
        columns["topic"] = self.topics
        columns["partition"] = pa.array(self.partitions, pa.int32())
        columns["offset"] = pa.array(self.offsets, pa.int64())
        return pa.table(columns)

    @staticmethod
    def empty(feature_names: tuple[str, ...]) -> Rows:
        """No rows, with ``feature_names``."""
        return Rows(
            feature_names,
            strings([]),
            np.zeros(0, np.int64),
            np.zeros((0, len(feature_names))),
            strings([]),
            np.zeros(0, np.int32),
            np.zeros(0, np.int64),
        )

    @staticmethod
    def concat(parts: Sequence[Rows], feature_names: tuple[str, ...]) -> Rows:
        """One `Rows` of all ``parts`` (all with ``feature_names``)."""
        if not parts:
            return Rows.empty(feature_names)
        if len(parts) == 1:
            return parts[0]
        versions = None
        if any(p.model_versions is not None for p in parts):
            versions = pa.concat_arrays(
                [
                    p.model_versions
                    if p.model_versions is not None
                    else pa.nulls(len(p), pa.string())
                    for p in parts
                ]
            )
        return Rows(
            feature_names,
            pa.concat_arrays([p.event_ids for p in parts]),
            np.concatenate([p.timestamps_us for p in parts]),
            np.concatenate([p.features for p in parts]),
            pa.concat_arrays([p.topics for p in parts]),
            np.concatenate([p.partitions for p in parts]),
            np.concatenate([p.offsets for p in parts]),
            versions,
        )
