"""InferenceBatch: many inference rows in one Kafka message, as an Arrow IPC stream.

High-throughput producers send ``content-type: application/vnd.apache.arrow.stream`` on
``{p}.inputs``. The Arrow schema carries ``driftline.schema_version`` and
``driftline.pipeline`` metadata; the columns are

* ``event_id`` (string, required), ``timestamp`` (timestamp with UTC zone, required),
* optional ``model_version`` (string), ``prediction`` (number or string) and
  ``probabilities`` (list of float64),
* every other column is a numeric feature, read as float64.

Decoding checks everything a later step would trip over, so a batch that passes can be
archived and monitored: IPC body compression is refused before anything is decompressed
(the sender chooses the decompressed size), the buffers are validated in full (offsets in
bounds, UTF-8 strings),
event ids have 1-256 characters like JSON events, and timestamps lie in the same range as
JSON event times (`MIN_TIMESTAMP_US`..`MAX_TIMESTAMP_US`).

>>> import numpy as np
>>> from datetime import datetime, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> batch = InferenceBatch.from_arrays("fraud", ["a", "b"], [t0, t0],
...                                    np.array([[1.0, 2.0], [3.0, 4.0]]), ["x", "y"])
>>> again = InferenceBatch.from_ipc(batch.to_ipc())
>>> again.feature_names, again.features().tolist()
(['x', 'y'], [[1.0, 2.0], [3.0, 4.0]])
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.schemas._base import SCHEMA_VERSION, _check_pipeline
from driftline.schemas._ipc import compressed_batches
from driftline.schemas.events import MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, InferenceEvent
from driftline.schemas.exceptions import MalformedError, SchemaError, SchemaVersionError

JSON_CONTENT_TYPE = "application/json"
ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
CONTENT_TYPE_HEADER = "content-type"

META_SCHEMA_VERSION = b"driftline.schema_version"
META_PIPELINE = b"driftline.pipeline"
RESERVED_COLUMNS = ("event_id", "timestamp", "model_version", "prediction", "probabilities")
"""Columns with a fixed meaning; every other column is a feature."""


@dataclass(frozen=True)
class InferenceBatch:
    """Rows of inference inputs for one pipeline, validated against the batch contract."""

    pipeline: str
    table: pa.Table

    schema_name = "inference_batch"

    def __post_init__(self) -> None:
        _validate(self.table, self.pipeline)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def feature_names(self) -> list[str]:
        return [n for n in self.table.column_names if n not in RESERVED_COLUMNS]

    def features(self) -> np.ndarray:
        """The feature matrix, float64, shape (rows, features)."""
        cols = [self.table.column(n).to_numpy(zero_copy_only=False) for n in self.feature_names]
        return np.column_stack(cols).astype(np.float64, copy=False)

    def to_ipc(self) -> bytes:
        """Encode as an Arrow IPC stream, with the contract metadata."""
        table = self.table.replace_schema_metadata(
            {
                META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(),
                META_PIPELINE: self.pipeline.encode(),
            }
        )
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_ipc(cls, data: bytes) -> InferenceBatch:
        """Decode and validate; raise `SchemaError` (with a reason code) when the bytes are bad."""
        try:
            compressed = compressed_batches(data)
        except (pa.ArrowException, OSError, struct.error, IndexError) as exc:
            raise MalformedError(f"not an Arrow IPC stream: {type(exc).__name__}: {exc}") from None
        if compressed:
            # The sender writes the decompressed sizes: 25 kB can ask for 800 MB (see _ipc).
            raise SchemaError(
                f"Arrow batch uses IPC body compression ({compressed} compressed batches), which "
                "driftline refuses unread (a small message can decompress to gigabytes); send "
                "uncompressed IPC and let the Kafka producer compress (compression.type)"
            )
        try:
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
            # Cheap checks trust the buffers; a bit flip in an offset buffer or a string
            # passes them and fails later, in the archive or the checkpoint.
            table.validate(full=True)
        except (pa.ArrowException, OSError) as exc:
            raise MalformedError(f"not an Arrow IPC stream: {type(exc).__name__}: {exc}") from None
        meta = table.schema.metadata or {}
        version = meta.get(META_SCHEMA_VERSION)
        if version != str(SCHEMA_VERSION).encode():
            raise SchemaVersionError(
                f"Arrow batch schema version {version!r}: this release reads version "
                f"{SCHEMA_VERSION}; set metadata {META_SCHEMA_VERSION.decode()}={SCHEMA_VERSION}"
            )
        try:
            pipeline = meta.get(META_PIPELINE, b"").decode()
        except UnicodeDecodeError:
            raise SchemaError("Arrow batch metadata driftline.pipeline is not UTF-8") from None
        return cls(pipeline=pipeline, table=table.replace_schema_metadata(None))

    @classmethod
    def from_arrays(
        cls,
        pipeline: str,
        event_ids: Sequence[str],
        timestamps: Sequence[datetime] | np.ndarray,
        features: np.ndarray,
        feature_names: Sequence[str],
        **optional: Any,
    ) -> InferenceBatch:
        """Build a batch from columns; ``optional`` may hold model_version/prediction lists."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(feature_names):
            raise SchemaError(
                f"features must have shape (rows, {len(feature_names)}), got {features.shape}"
            )
        columns: dict[str, Any] = {
            "event_id": pa.array(event_ids, pa.string()),
            "timestamp": pa.array(timestamps, pa.timestamp("ms", tz="UTC")),
        }
        for name, value in optional.items():
            if name not in RESERVED_COLUMNS:
                raise SchemaError(
                    f"unknown optional column {name!r}: use one of {RESERVED_COLUMNS}"
                )
            columns[name] = pa.array(value)
        for i, name in enumerate(feature_names):
            columns[name] = pa.array(features[:, i])
        return cls(pipeline=pipeline, table=pa.table(columns))

    @classmethod
    def from_events(cls, events: Sequence[InferenceEvent]) -> InferenceBatch:
        """Pack JSON events of one pipeline (same feature names) into one batch."""
        if not events:
            raise SchemaError("cannot build an InferenceBatch from no events")
        names = list(events[0].features)
        rows = np.array([[e.features[n] for n in names] for e in events], dtype=np.float64)
        optional: dict[str, Any] = {}
        if any(e.model_version is not None for e in events):
            optional["model_version"] = [e.model_version for e in events]
        return cls.from_arrays(
            events[0].pipeline,
            [e.event_id for e in events],
            [e.timestamp for e in events],
            rows,
            names,
            **optional,
        )


def _validate(table: pa.Table, pipeline: str) -> None:
    try:
        _check_pipeline(pipeline)
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
    names = table.column_names
    if len(set(names)) != len(names):
        raise SchemaError(f"duplicate column names in Arrow batch: {names}")
    for required in ("event_id", "timestamp"):
        if required not in names:
            raise SchemaError(f"Arrow batch lacks the required column {required!r}")
    if not pa.types.is_string(table.schema.field("event_id").type) and not pa.types.is_large_string(
        table.schema.field("event_id").type
    ):
        raise SchemaError("column 'event_id' must be a string column")
    if table.column("event_id").null_count:
        raise SchemaError("column 'event_id' has null values: every row needs an event id")
    if table.num_rows:
        lengths = pc.min_max(pc.utf8_length(table.column("event_id")))
        if lengths["min"].as_py() < 1 or lengths["max"].as_py() > 256:
            raise SchemaError("column 'event_id' must hold ids of 1 to 256 characters")
    ts = table.schema.field("timestamp").type
    if not pa.types.is_timestamp(ts) or ts.tz is None:
        raise SchemaError(f"column 'timestamp' must be a UTC timestamp, got {ts}")
    if table.column("timestamp").null_count:
        raise SchemaError("column 'timestamp' has null values")
    _check_time_range(table.column("timestamp"))
    for name, check, want in (
        ("model_version", pa.types.is_string, "utf8"),
        ("prediction", _is_prediction, "a number or utf8"),
        ("probabilities", _is_probabilities, "list<float64>"),
    ):
        if name in names and not check(table.schema.field(name).type):
            raise SchemaError(
                f"column {name!r} must be {want}, got {table.schema.field(name).type}"
            )
    features = [n for n in names if n not in RESERVED_COLUMNS]
    if not features:
        raise SchemaError("Arrow batch has no feature columns")
    for name in features:
        field = table.schema.field(name)
        if not (pa.types.is_floating(field.type) or pa.types.is_integer(field.type)):
            raise SchemaError(f"feature column {name!r} must be numeric, got {field.type}")
        if table.column(name).null_count:
            raise SchemaError(f"feature column {name!r} has null values")


def _check_time_range(column: pa.ChunkedArray) -> None:
    if len(column) == 0:
        return
    bounds = pc.min_max(column.cast(pa.int64()))
    unit = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1e-3}[column.type.unit]
    low, high = bounds["min"].as_py() * unit, bounds["max"].as_py() * unit
    if low < MIN_TIMESTAMP_US or high > MAX_TIMESTAMP_US:
        raise SchemaError(
            "column 'timestamp' holds times outside years 1000-9998 (the range JSON events "
            "allow too): check the unit of the column"
        )


def _is_prediction(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)


def _is_probabilities(t: pa.DataType) -> bool:
    return pa.types.is_list(t) and pa.types.is_floating(t.value_type)


def batch_contract() -> dict[str, Any]:
    """The Arrow batch contract as a JSON-serializable description (``schemas/json``)."""
    return {
        "title": "InferenceBatch",
        "description": "Arrow IPC stream of inference rows (content-type "
        f"{ARROW_CONTENT_TYPE}); every column not listed here is a numeric feature (float64).",
        "content_type": ARROW_CONTENT_TYPE,
        "body_compression": "none (compress with the Kafka producer's compression.type)",
        "schema_metadata": {
            META_SCHEMA_VERSION.decode(): str(SCHEMA_VERSION),
            META_PIPELINE.decode(): "pipeline name",
        },
        "columns": {
            "event_id": {"type": "utf8", "required": True, "length": [1, 256]},
            "timestamp": {
                "type": "timestamp[tz=UTC]",
                "required": True,
                "range_us": [MIN_TIMESTAMP_US, MAX_TIMESTAMP_US],
            },
            "model_version": {"type": "utf8", "required": False},
            "prediction": {"type": "float64 | int64 | utf8", "required": False},
            "probabilities": {"type": "list<float64>", "required": False},
        },
        "reserved_columns": list(RESERVED_COLUMNS),
    }
