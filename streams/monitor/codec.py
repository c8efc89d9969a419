"""Decode and validate input messages in bulk: valid rows as columns, the rest as dead letters.

Every message on ``{p}.inputs`` is either a JSON `InferenceEvent` or an Arrow IPC
`InferenceBatch` (``content-type`` header; JSON when the header is missing), or, with no
header, an `InferenceEvent` in the Confluent wire format (Avro or JSON Schema with a schema id:
`registry.RegistryDecoder` decodes a fetch's such messages in one pass, and the mappings go
through the same typed decoder as JSON). A message that
cannot be used becomes a `DeadLetter` carrying its original bytes, headers and source
offsets, with a reason code; nothing is dropped silently and nothing raises.

JSON events are decoded by a typed msgspec decoder (`wire.WireEvent`) written to the
published JSON Schema, and their timestamps are checked and converted for a whole fetch at
once (Arrow's RE2 regex and cast); no pydantic object is built per event. A property test
holds the decoder to the schema: for generated documents it accepts exactly what
``jsonschema`` accepts. Each message is decoded on its own, so one bad message (or one that
makes a decoder raise something unforeseen: reason ``poison``) never costs another's rows.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import chain
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    DeadLetter,
    DeadLetterReason,
    InferenceBatch,
    LabelEvent,
    SchemaError,
)
from driftline.schemas.events import _TIMESTAMP, TIMESTAMP_PATTERN
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import RegistryDecoder, Rejected, wire_schema_id
from driftline.streams.monitor.rows import TIMESTAMP_TYPE, Rows, strings
from driftline.streams.monitor.wire import WireEvent, decode_event

_NO_REGISTRY = RegistryDecoder(None)

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
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MICROSECOND = timedelta(microseconds=1)
# A JSON event waiting to become columns.
_Pending = tuple[RawMessage, Any]


@dataclass
class DecodedInputs:
    """What a batch of input messages decoded to.

    ``empty`` counts the messages that were valid but carried no rows (a zero-row Arrow
    batch): there is nothing in them to lose, so they are counted (the step reports them in
    ``MonitorOutput.empty_messages`` and the metric ``driftline_empty_messages_total``)
    rather than dead-lettered.
    """

    rows: Rows
    dead_letters: list[DeadLetter] = field(default_factory=list)
    empty: int = 0


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
        raw_headers=list(message.headers),
        key=message.key,
        payload=message.value,
        payload_size=len(message.value),
    )


class _Batch:
    """Accumulates decoded rows and dead letters in arrival order."""

    def __init__(self, pipeline: str, feature_names: tuple[str, ...] | None) -> None:
        self.pipeline = pipeline
        self.names = feature_names
        self.parts: list[Rows] = []
        self.dead: list[DeadLetter] = []
        self.empty = 0
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
            event = decode_event(message.value)
        except msgspec.ValidationError as exc:
            self.reject(
                message, DeadLetterReason.SCHEMA_VIOLATION, f"invalid InferenceEvent: {exc}"
            )
            return
        except msgspec.DecodeError as exc:
            self.reject(message, DeadLetterReason.MALFORMED, f"not JSON: {exc}")
            return
        self._accept(message, event)

    def add_decoded(self, message: RawMessage, decoded: Any) -> None:
        """A wire-format message decoded with its registered schema (a mapping, or why it
        could not be): held to the JSON event's contract, by the same typed decoder."""
        if isinstance(decoded, Rejected):
            self.reject(message, decoded.reason, decoded.detail)
            return
        try:
            event = msgspec.convert(_wire_mapping(decoded), WireEvent)
        except msgspec.ValidationError as exc:
            self.reject(
                message, DeadLetterReason.SCHEMA_VIOLATION, f"invalid InferenceEvent: {exc}"
            )
            return
        # JSON cannot carry NaN or infinities; Avro doubles can.
        if not all(map(math.isfinite, event.features.values())) or not all(
            map(math.isfinite, event.probabilities or ())
        ):
            self.reject(message, DeadLetterReason.NON_FINITE, "NaN or infinite features")
            return
        self._accept(message, event)

    def _accept(self, message: RawMessage, event: WireEvent) -> None:
        if event.schema_version != 1:
            self.reject(
                message,
                DeadLetterReason.SCHEMA_VERSION,
                f"schema_version {event.schema_version:g}: this release reads version 1",
            )
        elif event.pipeline != self.pipeline:
            self.reject(
                message,
                DeadLetterReason.WRONG_PIPELINE,
                f"event of pipeline {event.pipeline[:130]!r} sent to pipeline "
                f"{self.pipeline!r}: send it to its own pipeline's inputs topic",
            )
        elif self.names is not None or self.check_names(message, list(event.features)):
            self._json.append((message, event))

    def _flush_json(self) -> None:
        """Turn the pending JSON events into columns (kept in arrival order)."""
        pending, self._json = self._json, []
        if not pending:
            return
        dead, parts = len(self.dead), len(self.parts)
        try:
            self._columns(pending)
        except Exception:
            del self.dead[dead:], self.parts[parts:]
            for item in pending:
                guarded(self, item[0], partial(self._columns, [item]))

    def _columns(self, pending: list[_Pending]) -> None:
        names = self.names
        assert names is not None
        orders = set(map(tuple, (e.features for _, e in pending)))
        if len(orders) != 1 or set(next(iter(orders))) != set(names):
            # Mixed key orders or wrong names (rare): look at each event.
            pending = [p for p in pending if self.check_names(p[0], list(p[1].features))]
            orders = set()
        stamps, pending = self._timestamps(pending)
        if not pending:
            return
        n, k = len(pending), len(names)
        if len(orders) == 1:
            # One key order for the whole fetch (the usual case): the values in that order,
            # straight into the matrix, then the columns put in the pipeline's order.
            (order,) = orders
            values = chain.from_iterable(e.features.values() for _, e in pending)
            x = np.fromiter(values, np.float64, n * k).reshape(n, k)
            if order != names:
                x = x[:, [order.index(f) for f in names]]
        else:
            x = np.array([e.features[f] for _, e in pending for f in names], np.float64)
            x = x.reshape(n, k)
        versions = [e.model_version for _, e in pending]
        self.parts.append(
            Rows(
                names,
                strings([e.event_id for _, e in pending]),
                stamps,
                x,
                strings([m.topic for m, _ in pending]),
                np.fromiter((m.partition for m, _ in pending), np.int32, n),
                np.fromiter((m.offset for m, _ in pending), np.int64, n),
                None if all(v is None for v in versions) else strings(versions),
            )
        )

    def _timestamps(self, pending: list[_Pending]) -> tuple[np.ndarray, list[_Pending]]:
        """The events' times in µs (UTC), checked for the whole fetch at once (one RE2 pass,
        one cast); only when that fails is each one looked at, to reject the bad ones."""
        if not pending:
            return np.zeros(0, np.int64), pending
        text = pa.array([e.timestamp for _, e in pending], pa.string())
        try:
            if pc.all(pc.match_substring_regex(text, TIMESTAMP_PATTERN)).as_py():
                return _micros(text.cast(TIMESTAMP_TYPE)), pending
        except pa.ArrowInvalid:
            pass  # a calendar error (February 30): find it below
        keep = []
        for message, event in pending:
            good = _valid_time(event.timestamp)
            keep.append(good)
            if not good:
                self.reject(
                    message,
                    DeadLetterReason.SCHEMA_VIOLATION,
                    f"timestamp {event.timestamp[:40]!r} is not an RFC 3339 time with a zone "
                    "in years 1000-9998 (e.g. '2026-01-01T00:00:00Z', at most 6 fraction "
                    "digits)",
                )
        mask = pa.array(keep, pa.bool_())
        kept = [p for p, good in zip(pending, keep, strict=True) if good]
        return _micros(text.filter(mask).cast(TIMESTAMP_TYPE)), kept

    # ----------------------------------------------------------------- Arrow batches
    def add_arrow(self, message: RawMessage) -> None:
        self._flush_json()
        try:
            batch = InferenceBatch.from_ipc(message.value)
        except SchemaError as exc:
            self.reject(message, DeadLetterReason(exc.reason), str(exc))
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
            self.empty += 1  # nothing to lose: counted, not dead-lettered (see DecodedInputs)
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
        return DecodedInputs(Rows.concat(self.parts, names), self.dead, self.empty)


def guarded(batch: _Batch, message: RawMessage, work: Callable[[], None]) -> None:
    """Run ``work`` for one message; if it raises anything unforeseen, that message alone
    becomes a ``poison`` dead letter (decoding is deterministic: retrying cannot help)."""
    dead, parts, pending = len(batch.dead), len(batch.parts), len(batch._json)
    try:
        work()
    except Exception as exc:
        del batch.dead[dead:], batch.parts[parts:], batch._json[pending:]
        batch.reject(message, DeadLetterReason.POISON, f"{type(exc).__name__}: {exc}")


def _micros(stamps: pa.Array) -> np.ndarray:
    return np.asarray(stamps.cast(pa.int64()).to_numpy(), dtype=np.int64)


def _valid_time(stamp: str) -> bool:
    if not _TIMESTAMP.match(stamp):
        return False
    try:
        pa.scalar(stamp, pa.string()).cast(TIMESTAMP_TYPE)
    except pa.ArrowInvalid:
        return False
    return True


def _content_kind(message: RawMessage) -> str | None:
    """The media type of ``message``'s content-type header (None without one)."""
    content_type = message.header(CONTENT_TYPE_HEADER)
    return content_type.split(b";")[0].strip().decode("latin-1") if content_type else None


def decode_inputs(
    messages: Sequence[RawMessage],
    *,
    pipeline: str,
    feature_names: Sequence[str] | None = None,
    max_message_bytes: int = 8 * 1024 * 1024,
    registry: RegistryDecoder | None = None,
) -> DecodedInputs:
    """Decode ``messages`` of ``{pipeline}.inputs`` into valid rows and dead letters.

    ``feature_names`` are the pipeline's features; when None, the first valid message's
    features are adopted (``result.rows.feature_names``). Messages in the Confluent wire
    format (no content-type header, magic byte 0 and a schema id) are decoded with
    ``registry`` (`registry.RegistryDecoder`: one registry lookup per schema id new to it);
    without one they are dead letters (``unknown_schema``). Raises
    `registry.RegistryUnavailable` when the registry cannot be asked.
    """
    batch = _Batch(pipeline, tuple(feature_names) if feature_names is not None else None)
    wire = _decode_wire(messages, registry, max_message_bytes)
    # The headers of a fetch are mostly the same few tuples: each one's kind is read once.
    kinds: dict[tuple[tuple[str, bytes], ...], str | None] = {}
    for message in messages:
        if len(message.value) > max_message_bytes:
            batch.reject(
                message,
                DeadLetterReason.OVERSIZED,
                f"message of {len(message.value)} bytes exceeds max_message_bytes="
                f"{max_message_bytes}; split it into smaller batches or raise the setting",
            )
            continue
        headers = message.headers
        if headers in kinds:
            kind = kinds[headers]
        else:
            kind = kinds[headers] = _content_kind(message)
        if id(message) in wire:
            try:
                batch.add_decoded(message, wire[id(message)])
            except Exception as exc:
                batch.reject(message, DeadLetterReason.POISON, f"{type(exc).__name__}: {exc}")
        elif kind is None or kind == JSON_CONTENT_TYPE:
            try:  # add_json changes nothing until its last step: no rollback needed
                batch.add_json(message)
            except Exception as exc:
                batch.reject(message, DeadLetterReason.POISON, f"{type(exc).__name__}: {exc}")
        elif kind == ARROW_CONTENT_TYPE:
            guarded(batch, message, partial(batch.add_arrow, message))
        else:
            batch.reject(
                message,
                DeadLetterReason.UNKNOWN_CONTENT_TYPE,
                f"content-type {kind!r} is not one driftline reads: use {JSON_CONTENT_TYPE!r} "
                f"(one InferenceEvent) or {ARROW_CONTENT_TYPE!r} (an InferenceBatch)",
            )
    return batch.finish()


def decode_labels(
    messages: Sequence[RawMessage], *, pipeline: str, registry: RegistryDecoder | None = None
) -> DecodedLabels:
    """Validate `LabelEvent` messages of ``{pipeline}.labels`` into an archive table
    (wire-format labels decoded with ``registry``, as in `decode_inputs`)."""
    dead: list[DeadLetter] = []
    good: list[tuple[RawMessage, LabelEvent]] = []
    wire = _decode_wire(messages, registry)
    for message in messages:
        try:
            decoded = wire.get(id(message), _NOT_WIRE)
            if decoded is _NOT_WIRE:
                event = LabelEvent.from_json(message.value)
            elif isinstance(decoded, Rejected):
                dead.append(dead_letter(message, pipeline, decoded.reason, decoded.detail))
                continue
            elif isinstance(decoded, dict):
                event = LabelEvent.from_dict(decoded)
            else:
                raise SchemaError(f"a LabelEvent must be an object, got {type(decoded).__name__}")
        except SchemaError as exc:
            dead.append(dead_letter(message, pipeline, DeadLetterReason(exc.reason), str(exc)))
            continue
        except Exception as exc:
            reason = DeadLetterReason.POISON
            dead.append(dead_letter(message, pipeline, reason, f"{type(exc).__name__}: {exc}"))
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
        if isinstance(event.label, int) and not _INT64_MIN <= event.label <= _INT64_MAX:
            # Valid JSON, but the archive holds class labels as int64: one such label made
            # the whole fetch raise (and the labels agent stop).
            detail = (
                f"integer label {str(event.label)[:40]} does not fit in int64; send large "
                "class ids as strings"
            )
            dead.append(dead_letter(message, pipeline, DeadLetterReason.SCHEMA_VIOLATION, detail))
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


_NOT_WIRE = object()


def _decode_wire(
    messages: Sequence[RawMessage], registry: RegistryDecoder | None, max_bytes: int | None = None
) -> dict[int, Any]:
    """The wire-format messages among ``messages`` (by ``id``) decoded in one pass, so the
    registry is asked once per schema id, not once per message (larger than ``max_bytes``:
    left to the caller's size check, never decoded)."""
    wire = [
        m
        for m in messages
        if wire_schema_id(m.value) is not None  # first: one byte, false for JSON and Arrow
        and m.header(CONTENT_TYPE_HEADER) is None
        and (max_bytes is None or len(m.value) <= max_bytes)
    ]
    if not wire:
        return {}
    results = (registry or _NO_REGISTRY).decode(wire)
    return {id(m): r for m, r in zip(wire, results, strict=True)}


def _wire_mapping(decoded: Any) -> Any:
    """An Avro ``timestamp-*`` logical type arrives as a datetime; the contract's timestamp
    is RFC 3339 text, so an aware datetime becomes that text (a naive one stays and fails)."""
    if isinstance(decoded, dict):
        stamp = decoded.get("timestamp")
        if isinstance(stamp, datetime) and stamp.tzinfo is not None:
            return {**decoded, "timestamp": stamp.isoformat()}
    return decoded


def _label_array(labels: list[Any]) -> pa.Array:
    """Labels as one Arrow type: int64 for classes, float64 for targets, else strings."""
    kinds = set(map(type, labels))
    if kinds <= {int}:
        return pa.array(labels, pa.int64())
    if kinds <= {int, float}:
        return pa.array(labels, pa.float64())
    return pa.array([str(v) for v in labels], pa.string())
