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
once (Arrow's RE2 regex and cast); no pydantic object is built per event. A fetch's JSON
messages are decoded a run at a time (msgspec over the list in C), and once the pipeline's
features are known by `wire.fixed_decoder` (no dict per event; a document it refuses is
decoded again by the full decoder, for its reason). A property test holds the decoder to the
schema: for generated documents it accepts exactly what ``jsonschema`` accepts. Each message
has its own fate, so one bad message (or one that makes a decoder raise something
unforeseen: reason ``poison``) never costs another's rows.

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
from itertools import chain, islice
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.config.pipeline import DEFAULT_MAX_FEATURES
from driftline.lifecycle_store.label_types import LabelKind, value_kind
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
from driftline.streams.monitor.wire import WireEvent, decode_event, fixed_decoder

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
# Field readers that run in C over a whole fetch (RawMessage is a named tuple).
_VALUE, _TOPIC, _PARTITION, _OFFSET = (itemgetter(i) for i in (0, 3, 4, 5))
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_FEATURES, _PIPELINE, _VERSION = (
    attrgetter("features"),
    attrgetter("pipeline"),
    attrgetter("schema_version"),
)
_EVENT_ID, _STAMP, _MODEL_VERSION = (
    attrgetter("event_id"),
    attrgetter("timestamp"),
    attrgetter("model_version"),
)


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

    def __init__(
        self,
        pipeline: str,
        feature_names: tuple[str, ...] | None,
        max_features: int = DEFAULT_MAX_FEATURES,
    ) -> None:
        self.pipeline = pipeline
        self.names = feature_names
        self.max_features = max_features
        self.parts: list[Rows] = []
        self.dead: list[DeadLetter] = []
        self.empty = 0
        self._raw: list[RawMessage] = []
        self._json: list[_Pending] = []

    def reject(self, message: RawMessage, reason: DeadLetterReason, detail: str) -> None:
        self.dead.append(dead_letter(message, self.pipeline, reason, detail))

    def check_names(self, message: RawMessage, names: Sequence[str]) -> bool:
        """Adopt the first valid message's feature names; afterwards demand the same set.

        A message with more than ``max_features`` features is refused first: the reference
        fit costs memory quadratic in the feature count."""
        if len(names) > self.max_features:
            self.reject(
                message,
                DeadLetterReason.TOO_MANY_FEATURES,
                f"{len(names)} features, more than max_features={self.max_features}; set "
                "feature_names (and max_features, if the pipeline really is that wide)",
            )
            return False
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
        """Queue a JSON message: a run of them is decoded at once (`decode_queued`)."""
        self._raw.append(message)

    def decode_queued(self) -> None:
        """Decode the queued JSON messages in one pass; each bad one becomes its own dead
        letter, in arrival order, exactly as if they were decoded one by one."""
        run, self._raw = self._raw, []
        if not run:
            return
        fixed = fixed_decoder(self.names) if self.names is not None else None
        events, failed = _decode_many(list(map(_VALUE, run)), fixed or decode_event)
        pipeline = self.pipeline
        if (
            not failed
            and self.names is not None
            and set(map(_PIPELINE, events)) == {pipeline}
            and set(map(_VERSION, events)) == {1}
        ):
            self._json.extend(zip(run, events, strict=True))  # the usual fetch: all good
            return
        for message, event in zip(run, events, strict=True):
            try:
                if isinstance(event, msgspec.ValidationError):
                    reason, detail = DeadLetterReason.SCHEMA_VIOLATION, "invalid InferenceEvent"
                elif isinstance(event, msgspec.DecodeError):
                    reason, detail = DeadLetterReason.MALFORMED, "not JSON"
                elif isinstance(event, Exception):
                    reason, detail = DeadLetterReason.POISON, type(event).__name__
                else:
                    self._accept(message, event)
                    continue
                self.reject(message, reason, f"{detail}: {event}")
            except Exception as exc:  # nothing changed before the failing step
                self.reject(message, DeadLetterReason.POISON, f"{type(exc).__name__}: {exc}")

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
        self.decode_queued()
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
        kinds = set(map(type, map(_SECOND, pending)))
        if len(kinds) == 1 and kinds.pop() is not WireEvent:
            # All decoded by the pipeline's fixed decoder (the usual case): the features
            # are the pipeline's, their values in its order.
            self._fixed_columns(pending)
            return
        pending = [(m, _with_dict(e, names)) for m, e in pending]
        orders = set(map(tuple, map(_FEATURES, map(_SECOND, pending))))
        if len(orders) != 1 or set(next(iter(orders))) != set(names):
            # Mixed key orders or wrong names (rare): look at each event.
            pending = [p for p in pending if self.check_names(p[0], list(p[1].features))]
            orders = set()
        stamps, pending = self._timestamps(pending)
        if not pending:
            return
        n, k = len(pending), len(names)
        messages = list(map(_FIRST, pending))
        events = list(map(_SECOND, pending))
        if len(orders) == 1:
            # One key order for the whole fetch (the usual case): the values in that order,
            # straight into the matrix, then the columns put in the pipeline's order.
            (order,) = orders
            values = chain.from_iterable(map(dict.values, map(_FEATURES, events)))
            x = np.fromiter(values, np.float64, n * k).reshape(n, k)
            if order != names:
                x = x[:, [order.index(f) for f in names]]
        else:
            x = np.array([e.features[f] for e in events for f in names], np.float64)
            x = x.reshape(n, k)
        self._append_rows(messages, events, stamps, x)

    def _fixed_columns(self, pending: list[_Pending]) -> None:
        names = self.names
        assert names is not None
        stamps, pending = self._timestamps(pending)
        if not pending:
            return
        n = len(pending)
        messages = list(map(_FIRST, pending))
        events = list(map(_SECOND, pending))
        values = chain.from_iterable(map(msgspec.structs.astuple, map(_FEATURES, events)))
        x = np.fromiter(values, np.float64, n * len(names)).reshape(n, len(names))
        self._append_rows(messages, events, stamps, x)

    def _append_rows(
        self, messages: list[RawMessage], events: list[Any], stamps: np.ndarray, x: np.ndarray
    ) -> None:
        names = self.names
        assert names is not None
        n = len(messages)
        versions = list(map(_MODEL_VERSION, events))
        self.parts.append(
            Rows(
                names,
                strings(list(map(_EVENT_ID, events))),
                stamps,
                x,
                strings(list(map(_TOPIC, messages))),
                np.fromiter(map(_PARTITION, messages), np.int32, n),
                np.fromiter(map(_OFFSET, messages), np.int64, n),
                None if versions.count(None) == n else strings(versions),
            )
        )

    def _timestamps(self, pending: list[_Pending]) -> tuple[np.ndarray, list[_Pending]]:
        """The events' times in µs (UTC), checked for the whole fetch at once (one RE2 pass,
        one cast); only when that fails is each one looked at, to reject the bad ones."""
        if not pending:
            return np.zeros(0, np.int64), pending
        text = pa.array(list(map(_STAMP, map(_SECOND, pending))), pa.string())
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
        # One pass over the whole matrix first: a reduction per row costs 8x more, and only
        # a batch with some non-finite value needs to know which rows.
        if not np.isfinite(x).all():
            finite = np.asarray(np.isfinite(x).all(axis=1), dtype=bool)
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


def _decode_many(
    values: list[bytes], decode: Callable[[bytes], WireEvent]
) -> tuple[list[Any], int]:
    """Each value decoded as a `WireEvent` by ``decode``, or else by `decode_event` (or the
    exception that raised); and how many raised. The decoder runs over the whole list in C,
    resumed after each failure."""
    out: list[Any] = []
    failed = 0
    while len(out) < len(values):
        try:
            out.extend(map(decode, islice(values, len(out), None)))
        except Exception:
            # ``extend`` keeps what it decoded before the failure; the next value decoded
            # again by the full contract's decoder gives its exception (or its event).
            try:
                out.append(decode_event(values[len(out)]))
            except Exception as exc:
                out.append(exc)
                failed += 1
    return out, failed


def _with_dict(event: Any, names: tuple[str, ...]) -> Any:
    """``event`` with its features as a dict (an event of a fixed decoder has a struct)."""
    if isinstance(event.features, dict):
        return event
    values = msgspec.structs.astuple(event.features)
    return msgspec.structs.replace(event, features=dict(zip(names, values, strict=True)))


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
    max_features: int = DEFAULT_MAX_FEATURES,
) -> DecodedInputs:
    """Decode ``messages`` of ``{pipeline}.inputs`` into valid rows and dead letters.

    ``feature_names`` are the pipeline's features; when None, the first valid message's
    features are adopted (``result.rows.feature_names``). Messages in the Confluent wire
    format (no content-type header, magic byte 0 and a schema id) are decoded with
    ``registry`` (`registry.RegistryDecoder`: one registry lookup per schema id new to it);
    without one they are dead letters (``unknown_schema``). Raises
    `registry.RegistryUnavailable` when the registry cannot be asked. A message with more
    than ``max_features`` features is a ``too_many_features`` dead letter.
    """
    names = tuple(feature_names) if feature_names is not None else None
    batch = _Batch(pipeline, names, max_features)
    wire = _decode_wire(messages, registry, max_message_bytes)
    # The headers of a fetch are mostly the same few tuples: each one's kind is read once.
    kinds: dict[tuple[tuple[str, bytes], ...], str | None] = {}
    for message in messages:
        if len(message.value) > max_message_bytes:
            batch.decode_queued()  # every message's fate in arrival order
            batch.reject(
                message,
                DeadLetterReason.OVERSIZED,
                f"message of {len(message.value)} bytes exceeds max_message_bytes="
                f"{max_message_bytes}; split it into smaller batches or raise the setting",
            )
            continue
        headers = message.headers
        if type(headers) is not tuple:  # a caller's list: hashable as a tuple
            headers = tuple(headers)
        if headers in kinds:
            kind = kinds[headers]
        else:
            kind = kinds[headers] = _content_kind(message)
        if wire and id(message) in wire:
            batch.decode_queued()
            try:
                batch.add_decoded(message, wire[id(message)])
            except Exception as exc:
                batch.reject(message, DeadLetterReason.POISON, f"{type(exc).__name__}: {exc}")
        elif kind is None or kind == JSON_CONTENT_TYPE:
            batch.add_json(message)  # queued: a run of JSON messages is decoded at once
        elif kind == ARROW_CONTENT_TYPE:
            # The JSON rows before it first, outside the guard: its rollback must not undo them.
            batch._flush_json()
            guarded(batch, message, partial(batch.add_arrow, message))
        else:
            batch.decode_queued()
            batch.reject(
                message,
                DeadLetterReason.UNKNOWN_CONTENT_TYPE,
                f"content-type {kind!r} is not one driftline reads: use {JSON_CONTENT_TYPE!r} "
                f"(one InferenceEvent) or {ARROW_CONTENT_TYPE!r} (an InferenceBatch)",
            )
    return batch.finish()


def decode_labels(
    messages: Sequence[RawMessage],
    *,
    pipeline: str,
    registry: RegistryDecoder | None = None,
    label_kind: LabelKind | None = None,
) -> DecodedLabels:
    """Validate `LabelEvent` messages of ``{pipeline}.labels`` into an archive table
    (wire-format labels decoded with ``registry``, as in `decode_inputs`).

    Labels must be of the pipeline's ``label_kind`` (numbers or strings; with None, the first
    valid label's kind): another kind is a ``label_type_mismatch`` dead letter."""
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
        kind = value_kind(event.label)
        if label_kind is None:
            label_kind = kind  # the pipeline's first label pins its kind
        elif kind != label_kind:
            detail = (
                f"a {kind} label for a pipeline whose labels are {label_kind}s (pinned by the "
                "config or the first label archived)"
            )
            reason = DeadLetterReason.LABEL_TYPE_MISMATCH
            dead.append(dead_letter(message, pipeline, reason, detail))
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
        if m.value[:1] == b"\x00"  # first: one byte, false for JSON and Arrow
        and wire_schema_id(m.value) is not None
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
