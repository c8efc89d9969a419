"""The JSON event contracts of driftline, one pydantic model each.

The JSON Schema files in ``schemas/json/`` are generated from these models
(``python -m driftline.schemas.files``) and a test keeps the two equal.

>>> from datetime import datetime, timezone
>>> e = InferenceEvent(event_id="e-1", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
...                    pipeline="fraud", features={"amount": 12.5, "age": 40.0})
>>> InferenceEvent.from_json(e.to_json()) == e
True
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from driftline.schemas._base import Event, EventId, PipelineName, UtcDatetime, _utc, utcnow

Label = StrictInt | StrictFloat | StrictStr
"""A ground-truth label or a prediction: a class (int or str) or a regression target.

Strict, as the JSON Schema says: ``true`` is not the class 1 and ``"1.5"`` is not a number."""

TIMESTAMP_PATTERN = (
    r"^([1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-"
    r"(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""The wire form of an input's time: RFC 3339 with a zone, at most microseconds, and a year
from 1000 to 9998 — so the time stays representable after conversion to UTC (``9999-12-31
T23:59:59-01:00`` would not). Written without look-arounds so ECMA, Python and RE2 read it
alike; ``format: date-time`` adds the calendar check (no February 30)."""
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
MIN_TIMESTAMP_US = (datetime(1000, 1, 1, tzinfo=UTC) - timedelta(days=1) - _EPOCH) // _US
MAX_TIMESTAMP_US = (datetime(9999, 1, 1, tzinfo=UTC) + timedelta(days=1) - _EPOCH) // _US - 1
"""Bounds (µs since the epoch, UTC) of every time `TIMESTAMP_PATTERN` admits, zone offset
included; Arrow batches and Python-built events are held to the same range."""


def _wire_time(value: Any) -> Any:
    if isinstance(value, str):
        if not _TIMESTAMP.match(value):
            raise ValueError(
                f"timestamp {value[:40]!r} is not RFC 3339 with a zone in years 1000-9998 "
                "(e.g. '2026-01-01T00:00:00Z', at most 6 fraction digits)"
            )
    elif isinstance(value, datetime):
        if value.tzinfo is not None and not (
            MIN_TIMESTAMP_US <= (value - _EPOCH) // _US <= MAX_TIMESTAMP_US
        ):
            raise ValueError(f"timestamp {value.isoformat()} lies outside years 1000-9998")
    else:
        raise ValueError("timestamp must be an RFC 3339 string such as '2026-01-01T00:00:00Z'")
    return value


InputTime = Annotated[
    datetime,
    BeforeValidator(_wire_time),
    AfterValidator(_utc),
    Field(json_schema_extra={"pattern": TIMESTAMP_PATTERN}),
]
"""The time of an input or label: what `TIMESTAMP_PATTERN` admits (never a number)."""
Probability = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("schema_version must be the number 1, not a boolean")
    return value


WireVersion = Annotated[Literal[1], BeforeValidator(_not_bool)]
"""``schema_version`` of an input: 1 (or 1.0, the same JSON number), never ``true``."""


class InferenceEvent(Event):
    """One inference input as a producer sends it to ``{p}.inputs``: the features a model
    version saw, and optionally what it predicted."""

    schema_name: ClassVar[str] = "inference_event"

    schema_version: WireVersion = 1
    event_id: EventId
    timestamp: InputTime
    pipeline: PipelineName
    features: dict[str, StrictFloat] = Field(min_length=1)
    model_version: StrictStr | None = None
    prediction: Label | None = None
    probabilities: list[Probability] | None = None


class LabelEvent(Event):
    """Delayed ground truth for an earlier inference event, joined by ``event_id``."""

    schema_name: ClassVar[str] = "label_event"

    schema_version: WireVersion = 1
    event_id: EventId
    label: Label
    timestamp: InputTime
    pipeline: PipelineName | None = None


class FeatureScore(BaseModel):
    """A feature and its share of a drift statistic: in ``[0, 1]``, larger = more drifted.

    The monitor normalises the detector's attribution so the shares of all features sum to
    1 (the event carries the largest ten), whatever the detector's own scale: a consumer can
    compare scores across detectors, streams and alarms.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    score: float = Field(ge=0.0, le=1.0)


class ChangePoint(BaseModel):
    """Where the change began in one partition, estimated backwards from the alarm.

    ``offset``/``timestamp`` are those of the first row estimated to be drifted;
    ``rows_before_alarm`` counts the partition's rows from it to the alarm's row (0 = the
    alarm row itself). ``confident`` is False when the recent window showed no change it
    could place (the estimate is then the window's first row: the change began there or
    earlier).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp: UtcDatetime
    rows_before_alarm: int = Field(ge=0)
    confident: bool = True


class SourceRange(BaseModel):
    """Offsets ``[start_offset, end_offset]`` (inclusive) of one topic partition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int = Field(ge=0)
    start_offset: int = Field(ge=0)
    end_offset: int = Field(ge=0)


class DriftEvent(Event):
    """A detector's alarm, published to ``{p}.drift``.

    The drift *episode* is the time one reference is in force: all alarms raised between
    two deployments belong to one episode (``episode_key``). It is keyed by the deployment
    that installed the reference, not by the reference data version alone, so redeploying an
    old model (a recurring concept, a rollback) opens a new episode instead of reopening a
    closed one.
    """

    schema_name: ClassVar[str] = "drift_event"

    drift_id: EventId
    pipeline: PipelineName
    detector: str
    statistic: float
    threshold: float
    features: list[FeatureScore] = Field(default_factory=list)
    window_start: UtcDatetime
    window_end: UtcDatetime
    offsets: list[SourceRange] = Field(default_factory=list)
    rows_seen: int = Field(ge=0, description="events monitored since the detector was reset")
    reference_data_version: str | None = None
    reference_deployment_id: str | None = Field(
        default=None, description="the champion deployment whose data is the reference"
    )
    change_points: list[ChangePoint] = Field(
        default_factory=list, description="estimated start of the change, per partition"
    )
    detected_at: UtcDatetime = Field(default_factory=utcnow)
    signature: str | None = Field(default=None, max_length=128)
    """Base64 Ed25519 signature of the other fields, by the monitor (see
    `driftline.schemas.signing`): the retrainer refuses unsigned and forged alarms."""
    key_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    """Id of the monitor key that signed the event."""

    @property
    def change_start(self) -> datetime:
        """When the change began: the earliest estimated change point, else the start of the
        window the detector was monitoring (an upper bound on the change's start)."""
        if self.change_points:
            return min(cp.timestamp for cp in self.change_points)
        return self.window_start

    @property
    def episode_key(self) -> str:
        """One key per drift episode: alarms raised while one reference is in force share it."""
        if self.reference_deployment_id:
            return f"{self.pipeline}/deployment/{self.reference_deployment_id}"
        return f"{self.pipeline}/{self.reference_data_version or 'bootstrap'}"


class ModelVersionEvent(Event):
    """A deployed model version, published to the compacted ``{p}.model-versions`` topic.

    A pointer, never the weights: consumers verify the publisher's signature, resolve
    ``artifact_uri`` inside their own artifact store, and check ``content_hash`` (sha256 hex of
    the artifact bytes) before swapping. A validly signed event can still be sent again by
    anyone who can write the topic; the signed ``deployment_seq`` (else ``deployed_at``) orders
    deployments so that a consumer never goes back to an older one.
    """

    schema_name: ClassVar[str] = "model_version_event"

    pipeline: PipelineName
    alias: str = Field(default="champion", min_length=1, max_length=64)
    deployment_id: str
    model_version_id: str
    artifact_uri: str
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    framework: str
    feature_names: list[str]
    metrics: dict[str, float] = Field(default_factory=dict)
    data_version_id: str | None = None
    parent_model_version_id: str | None = None
    reason: str = ""
    deployed_at: UtcDatetime = Field(default_factory=utcnow)
    deployment_seq: int | None = Field(
        default=None,
        ge=1,
        description="the deployment's place in its alias's history (1, 2, ...; a rollback is "
        "a new entry): consumers refuse an event older than the one they serve (a replay)",
    )
    signature: str | None = Field(default=None, max_length=128)
    """Base64 Ed25519 signature of the other fields (see `driftline.schemas.signing`)."""
    key_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    """Id of the publisher key that signed the event."""

    @property
    def key(self) -> bytes:
        """Kafka key: one compacted slot per pipeline and alias."""
        return f"{self.pipeline}/{self.alias}".encode()


class DeadLetterReason(StrEnum):
    """Why an input message was dead-lettered (stable codes for alerting)."""

    MALFORMED = "malformed"
    SCHEMA_VERSION = "schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    FEATURE_MISMATCH = "feature_mismatch"
    NON_FINITE = "non_finite"
    OVERSIZED = "oversized"
    UNKNOWN_CONTENT_TYPE = "unknown_content_type"
    WRONG_PIPELINE = "wrong_pipeline"
    UNKNOWN_SCHEMA = "unknown_schema"
    """Confluent wire format with a schema id the configured registry does not know (or no
    registry configured)."""
    UNSUPPORTED_SCHEMA = "unsupported_schema"
    """Confluent wire format with a registered schema of a type driftline does not read."""
    TOO_MANY_FEATURES = "too_many_features"
    """More features than the pipeline's ``max_features`` (refused before any fit)."""
    EARLY_LABEL_OVERFLOW = "early_label_overflow"
    """One of the oldest labels held before any input, dropped past the limit."""
    LABEL_TYPE_MISMATCH = "label_type_mismatch"
    """A label of another kind (number or string) than the pipeline's labels."""
    UNSIGNED = "unsigned"
    """An internal record (a detector summary) without a valid signature of the pipeline's
    workers: unsigned, signed with an unknown key, or altered."""
    POISON = "poison"
    """Passed validation yet made the step fail (archive or decode) on every attempt."""


class DeadLetter(Event):
    """An input that could not be used, kept whole on ``{p}.dlq`` with the reason."""

    schema_name: ClassVar[str] = "dead_letter"
    # Raw bytes in Python, base64 in JSON: the original message survives byte for byte.
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    pipeline: PipelineName
    reason: DeadLetterReason
    detail: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="readable view of the headers (lossy: see raw_headers)"
    )
    raw_headers: list[tuple[str, bytes]] = Field(
        default_factory=list,
        description="every header in order, values byte for byte (base64 in JSON)",
    )
    key: bytes | None = None
    payload: bytes
    payload_size: int | None = Field(
        default=None, ge=0, description="bytes of the original message"
    )
    payload_ref: str | None = Field(
        default=None,
        description="artifact-store key of the original bytes when they were too large for "
        "the DLQ (payload is empty then)",
    )
    failed_at: UtcDatetime = Field(default_factory=utcnow)


class LabelRequest(Event):
    """A request for ground truth: the most informative unlabeled events of a drifted window."""

    schema_name: ClassVar[str] = "label_request"

    request_id: str
    pipeline: PipelineName
    event_ids: list[EventId] = Field(min_length=1)
    reason: str
    drift_id: str | None = None
    training_id: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)


class OODFlag(Event):
    """An event whose features lie far from the reference data (for filtering consumers)."""

    schema_name: ClassVar[str] = "ood_flag"

    event_id: EventId
    pipeline: PipelineName
    score: float = Field(ge=0)
    threshold: float = Field(ge=0)
    timestamp: UtcDatetime


JSON_EVENTS: tuple[type[Event], ...] = (
    InferenceEvent,
    LabelEvent,
    DriftEvent,
    ModelVersionEvent,
    DeadLetter,
    LabelRequest,
    OODFlag,
)
"""Every event sent as JSON; each has a schema file ``schemas/json/{schema_name}.json``."""
