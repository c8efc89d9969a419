"""Decode and validate input messages in bulk: valid rows as columns, the rest as dead letters.

Every message on ``{p}.inputs`` is either a JSON `InferenceEvent` or an Arrow IPC
`InferenceBatch` (``content-type`` header; JSON when the header is missing). A message that
cannot be used becomes a `DeadLetter` carrying its original bytes, headers and source
offsets, with a reason code; nothing is dropped silently and nothing raises.

The JSON hot path does not build a pydantic object per event: it parses with orjson and
accepts an event only when a handful of exact checks prove pydantic would accept it with the
same values (ISO timestamps with a zone, string ids, plain int/float features, no unknown
keys). Anything else — rare in practice — goes through `InferenceEvent.from_json`, which
decides. So the accept/reject decisions are the pydantic model's by construction, and a
test checks the fast path against the model on generated events.

>>> from datetime import datetime, timezone
>>> from driftline.schemas import InferenceEvent
>>> good = InferenceEvent(event_id="e1", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
...                       pipeline="fraud", features={"x": 1.0, "y": 2.0}).to_json()
>>> msgs = [RawMessage(good, topic="fraud.inputs", offset=0),
...         RawMessage(b"{oops", topic="fraud.inputs", offset=1)]
>>> out = decode_inputs(msgs, pipeline="fraud")
>>> out.rows.event_ids.to_pylist(), out.rows.features.tolist()
(['e1'], [[1.0, 2.0]])
>>> [d.reason.value for d in out.dead_letters]
['malformed']
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    DeadLetter,
    DeadLetterReason,
    InferenceBatch,
    InferenceEvent,
    LabelEvent,
    SchemaError,
    SchemaVersionError,
)
from driftline.streams.monitor.messages import RawMessage

__all__ = [
    "DecodedInputs",
    "DecodedLabels",
    "Rows",
    "dead_letter",
    "decode_inputs",
    "decode_labels",
    "strings",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Only the plain ISO 8601 forms both pydantic and `datetime.fromisoformat` read the same way.
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_EVENT_KEYS = frozenset(InferenceEvent.model_fields)
_PLAIN = frozenset({int, float})
_LABEL_TYPES = (int, float, str)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
# A JSON event waiting to become columns: (message, event_id, timestamp µs, features, model)
_Pending = tuple[RawMessage, str, int, dict[str, Any], str | None]


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


@dataclass
class DecodedInputs:
    """What a batch of input messages decoded to."""

    rows: Rows
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass
class DecodedLabels:
    """Valid labels as an archive table (event_id, label, timestamp, topic, partition, offset)
    plus the dead letters of the bad ones."""

    table: pa.Table | None
    dead_letters: list[DeadLetter] = field(default_factory=list)


def dead_letter(
    message: RawMessage, pipeline: str, reason: DeadLetterReason, detail: str
) -> DeadLetter:
    """A dead letter that keeps ``message`` whole (bytes, key, headers, source offsets)."""
    return DeadLetter(
        pipeline=pipeline,
        reason=reason,
        detail=detail[:2000],
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        headers={k: v.decode("utf-8", "replace") for k, v in message.headers},
        key=message.key,
        payload=message.value,
    )


class _Batch:
    """Accumulates decoded rows and dead letters in arrival order."""

    def __init__(self, pipeline: str, feature_names: tuple[str, ...] | None) -> None:
        self.pipeline = pipeline
        self.names = feature_names
        self.parts: list[Rows] = []
        self.dead: list[DeadLetter] = []
        self._json: list[_Pending] = []

    def reject(self, message: RawMessage, reason: DeadLetterReason, detail: str) -> None:
        self.dead.append(dead_letter(message, self.pipeline, reason, detail))

    def check_names(self, message: RawMessage, names: Sequence[str]) -> bool:
        """Adopt the first valid message's feature names; afterwards demand the same set."""
        if self.names is None:
            if len(set(names)) != len(names):
                self.reject(message, DeadLetterReason.FEATURE_MISMATCH, "duplicate feature names")
                return False
            self.names = tuple(names)
            return True
        if len(names) == len(self.names) and set(names) == set(self.names):
            return True
        missing = sorted(set(self.names) - set(names))
        extra = sorted(set(names) - set(self.names))
        self.reject(
            message,
            DeadLetterReason.FEATURE_MISMATCH,
            f"features do not match the pipeline's {len(self.names)} features: "
            f"missing {missing[:20]}, unexpected {extra[:20]}; "
            f"send exactly {list(self.names)[:20]}",
        )
        return False

    # ----------------------------------------------------------------- JSON events
    def add_json(self, message: RawMessage) -> None:
        try:
            doc = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            doc = None
        fast = None if doc is None else _fast_event(doc, self.pipeline)
        if fast is None or (self.names is not None and len(fast[2]) != len(self.names)):
            item = self._json_slow(message)
        elif self.names is None and not self.check_names(message, list(fast[2])):
            return
        else:
            item = (message, *fast)
        if item is not None:
            self._json.append(item)

    def _json_slow(self, message: RawMessage) -> _Pending | None:
        """Let the pydantic model decide, and name the reason precisely."""
        try:
            event = InferenceEvent.from_json(message.value)
        except SchemaVersionError as exc:
            self.reject(message, DeadLetterReason.SCHEMA_VERSION, str(exc))
            return None
        except SchemaError as exc:
            text = str(exc)
            if "Invalid JSON" in text:
                reason = DeadLetterReason.MALFORMED
            elif "finite number" in text:
                reason = DeadLetterReason.NON_FINITE
            else:
                reason = DeadLetterReason.SCHEMA_VIOLATION
            self.reject(message, reason, text)
            return None
        if event.pipeline != self.pipeline:
            self.reject(
                message,
                DeadLetterReason.WRONG_PIPELINE,
                f"event of pipeline {event.pipeline!r} sent to pipeline {self.pipeline!r}: "
                f"send it to {event.pipeline}.inputs",
            )
            return None
        if not self.check_names(message, list(event.features)):
            return None
        ts = (event.timestamp - _EPOCH) // _MICROSECOND
        return message, event.event_id, ts, dict(event.features), event.model_version

    def _flush_json(self) -> None:
        """Turn the pending JSON events into columns (kept in arrival order)."""
        pending, self._json = self._json, []
        if not pending:
            return
        names = self.names
        assert names is not None
        try:
            flat = [feats[n] for _, _, _, feats, _ in pending for n in names]
            clean = len(flat) == len(pending) * len(names) and set(map(type, flat)) <= _PLAIN
        except KeyError:
            clean = False
        if not clean:
            pending = [item for item in map(self._recheck, pending) if item is not None]
            flat = [feats[n] for _, _, _, feats, _ in pending for n in names]
        x = np.array(flat, dtype=np.float64).reshape(len(pending), len(names))
        finite = np.asarray(np.isfinite(x).all(axis=1), dtype=bool)
        if not finite.all():
            for i in np.flatnonzero(~finite):
                bad = [n for n, v in zip(names, x[i], strict=True) if not np.isfinite(v)]
                self.reject(
                    pending[i][0],
                    DeadLetterReason.NON_FINITE,
                    f"features must be finite numbers; got NaN or infinity in {bad}",
                )
            pending = [p for p, ok in zip(pending, finite, strict=True) if ok]
            x = x[finite]
        if not pending:
            return
        versions = [p[4] for p in pending]
        self.parts.append(
            Rows(
                names,
                strings([p[1] for p in pending]),
                np.fromiter((p[2] for p in pending), np.int64, len(pending)),
                x,
                strings([p[0].topic for p in pending]),
                np.fromiter((p[0].partition for p in pending), np.int32, len(pending)),
                np.fromiter((p[0].offset for p in pending), np.int64, len(pending)),
                None if all(v is None for v in versions) else strings(versions),
            )
        )

    def _recheck(self, item: _Pending) -> _Pending | None:
        """One event of a batch that failed the bulk checks: wrong names or values that are
        not plain numbers (e.g. ``"1.5"`` or ``true``, which pydantic converts)."""
        assert self.names is not None
        features = item[3]
        if not (len(features) == len(self.names) and all(n in features for n in self.names)):
            self.check_names(item[0], list(features))
            return None
        if all(type(features[n]) in _PLAIN for n in self.names) and all(
            math.isfinite(float(features[n])) for n in self.names
        ):
            return item
        return self._json_slow(item[0])

    # ----------------------------------------------------------------- Arrow batches
    def add_arrow(self, message: RawMessage) -> None:
        self._flush_json()
        try:
            batch = InferenceBatch.from_ipc(message.value)
        except SchemaVersionError as exc:
            self.reject(message, DeadLetterReason.SCHEMA_VERSION, str(exc))
            return
        except SchemaError as exc:
            text = str(exc)
            reason = (
                DeadLetterReason.MALFORMED
                if text.startswith("not an Arrow IPC stream")
                else DeadLetterReason.SCHEMA_VIOLATION
            )
            self.reject(message, reason, text)
            return
        if batch.pipeline != self.pipeline:
            self.reject(
                message,
                DeadLetterReason.WRONG_PIPELINE,
                f"Arrow batch of pipeline {batch.pipeline!r} sent to pipeline {self.pipeline!r}",
            )
            return
        if not self.check_names(message, batch.feature_names):
            return
        table = batch.table
        assert self.names is not None
        n = table.num_rows
        if n == 0:
            return
        x = np.empty((n, len(self.names)), dtype=np.float64)
        for j, name in enumerate(self.names):
            x[:, j] = table.column(name).to_numpy()
        rows = Rows(
            self.names,
            strings(table.column("event_id")),
            table.column("timestamp").cast(TIMESTAMP_TYPE).cast(pa.int64()).to_numpy(),
            x,
            strings(pa.repeat(message.topic, n)),
            np.full(n, message.partition, np.int32),
            np.full(n, message.offset, np.int64),
            strings(table.column("model_version"))
            if "model_version" in table.column_names
            else None,
        )
        finite = np.asarray(np.isfinite(x).all(axis=1), dtype=bool)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            # The message is kept whole in the DLQ; its finite rows still count, and a replay
            # of the dead letter re-sends them harmlessly (rows are deduplicated by event id).
            self.reject(
                message,
                DeadLetterReason.NON_FINITE,
                f"{bad.size} of {n} rows have NaN or infinite features (event ids "
                f"{rows.event_ids.take(bad[:10]).to_pylist()}); the other {n - bad.size} rows were "
                "accepted",
            )
            rows = rows.take(finite)
        self.parts.append(rows)

    def finish(self) -> DecodedInputs:
        self._flush_json()
        names = self.names or ()
        return DecodedInputs(Rows.concat(self.parts, names), self.dead)


def _fast_event(doc: Any, pipeline: str) -> tuple[str, int, dict[str, Any], str | None] | None:
    """(event_id, timestamp µs, features, model_version) when pydantic would surely accept
    ``doc`` unchanged, else None (the caller asks pydantic)."""
    if type(doc) is not dict or not doc.keys() <= _EVENT_KEYS:
        return None
    version = doc.get("schema_version", 1)
    if type(version) is not int or version != 1:
        return None
    event_id = doc.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= 256:
        return None
    if doc.get("pipeline") != pipeline:
        return None
    features = doc.get("features")
    if type(features) is not dict or not features:
        return None
    stamp = doc.get("timestamp")
    if type(stamp) is not str or not _ISO.fullmatch(stamp):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    model_version = doc.get("model_version")
    if model_version is not None and type(model_version) is not str:
        return None
    prediction = doc.get("prediction")
    if prediction is not None and type(prediction) not in _LABEL_TYPES:
        return None
    probabilities = doc.get("probabilities")
    if probabilities is not None and (
        type(probabilities) is not list
        or not all(type(p) in _PLAIN and 0.0 <= p <= 1.0 for p in probabilities)
    ):
        return None
    return event_id, (when - _EPOCH) // _MICROSECOND, features, model_version


def decode_inputs(
    messages: Sequence[RawMessage],
    *,
    pipeline: str,
    feature_names: Sequence[str] | None = None,
    max_message_bytes: int = 8 * 1024 * 1024,
) -> DecodedInputs:
    """Decode ``messages`` of ``{pipeline}.inputs`` into valid rows and dead letters.

    ``feature_names`` are the pipeline's features; when None, the first valid message's
    features are adopted (``result.rows.feature_names``).
    """
    batch = _Batch(pipeline, tuple(feature_names) if feature_names is not None else None)
    for message in messages:
        if len(message.value) > max_message_bytes:
            batch.reject(
                message,
                DeadLetterReason.OVERSIZED,
                f"message of {len(message.value)} bytes exceeds max_message_bytes="
                f"{max_message_bytes}; split it into smaller batches or raise the setting",
            )
            continue
        content_type = message.header(CONTENT_TYPE_HEADER)
        kind = content_type.split(b";")[0].strip().decode("latin-1") if content_type else None
        if kind is None or kind == JSON_CONTENT_TYPE:
            batch.add_json(message)
        elif kind == ARROW_CONTENT_TYPE:
            batch.add_arrow(message)
        else:
            batch.reject(
                message,
                DeadLetterReason.UNKNOWN_CONTENT_TYPE,
                f"content-type {kind!r} is not one driftline reads: use {JSON_CONTENT_TYPE!r} "
                f"(one InferenceEvent) or {ARROW_CONTENT_TYPE!r} (an InferenceBatch)",
            )
    return batch.finish()


def decode_labels(messages: Sequence[RawMessage], *, pipeline: str) -> DecodedLabels:
    """Validate `LabelEvent` messages of ``{pipeline}.labels`` into an archive table."""
    dead: list[DeadLetter] = []
    good: list[tuple[RawMessage, LabelEvent]] = []
    for message in messages:
        try:
            event = LabelEvent.from_json(message.value)
        except SchemaVersionError as exc:
            dead.append(dead_letter(message, pipeline, DeadLetterReason.SCHEMA_VERSION, str(exc)))
            continue
        except SchemaError as exc:
            reason = (
                DeadLetterReason.MALFORMED
                if "Invalid JSON" in str(exc)
                else DeadLetterReason.SCHEMA_VIOLATION
            )
            dead.append(dead_letter(message, pipeline, reason, str(exc)))
            continue
        if event.pipeline is not None and event.pipeline != pipeline:
            dead.append(
                dead_letter(
                    message,
                    pipeline,
                    DeadLetterReason.WRONG_PIPELINE,
                    f"label of pipeline {event.pipeline!r} sent to pipeline {pipeline!r}",
                )
            )
            continue
        good.append((message, event))
    if not good:
        return DecodedLabels(None, dead)
    table = pa.table(
        {
            "event_id": pa.array([e.event_id for _, e in good], pa.string()),
            "label": _label_array([e.label for _, e in good]),
            "timestamp": pa.array(
                [(e.timestamp - _EPOCH) // _MICROSECOND for _, e in good], pa.int64()
            ).cast(TIMESTAMP_TYPE),
            "topic": pa.array([m.topic for m, _ in good], pa.string()),
            "partition": pa.array([m.partition for m, _ in good], pa.int32()),
            "offset": pa.array([m.offset for m, _ in good], pa.int64()),
        }
    )
    return DecodedLabels(table, dead)


def _label_array(labels: list[Any]) -> pa.Array:
    """Labels as one Arrow type: int64 for classes, float64 for targets, else strings."""
    kinds = set(map(type, labels))
    if kinds <= {int}:
        return pa.array(labels, pa.int64())
    if kinds <= {int, float}:
        return pa.array(labels, pa.float64())
    return pa.array([str(v) for v in labels], pa.string())
