"""The records the store returns: frozen, plain values that outlive their database session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from driftline.lifecycle_store import orm

__all__ = [
    "ArchiveSegment",
    "DataVersion",
    "Deployment",
    "DriftEventRecord",
    "Lifecycle",
    "LineageNode",
    "ModelVersion",
    "OutboxItem",
    "OutboxMessage",
    "Pipeline",
    "SimilarLifecycle",
    "Training",
    "TrainingStatus",
]

TrainingStatus = Literal["NEW", "RUNNING", "COMPLETE", "FAILED", "SKIPPED"]
Combine = Literal["append", "merge", "filter", "root"]
NodeKind = Literal["data_version", "training", "model_version", "deployment", "drift_event"]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A named stream of inference inputs with a fixed list of features.

    >>> Pipeline(1, "fraud", ("amount", "age"), {}, None, None).feature_names
    ('amount', 'age')
    """

    id: int
    name: str
    feature_names: tuple[str, ...]
    config: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def _from_row(cls, row: orm.PipelineRow) -> Pipeline:
        return cls(
            row.id,
            row.name,
            tuple(row.feature_names),
            dict(row.config),
            row.created_at,
            row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class DataVersion:
    """An immutable, content-addressed snapshot of rows, stored as Parquet.

    ``id`` is derived from the pipeline and the hash of the canonical content, so the same
    rows always get the same id. ``parents`` and ``combine`` record how it was made from
    earlier versions (``append``, ``merge``, ``filter``; ``root`` when it has none).
    ``stats`` holds per-feature ``count``/``nulls``/``mean``/``std``/``min``/``max``.

    >>> dv = DataVersion("dv-1", "fraud", "ab", "file:///x", 10, (), None, None, None,
    ...                  "root", (), 256, {}, None)
    >>> dv.row_count, dv.combine
    (10, 'root')
    """

    id: str
    pipeline: str
    content_hash: str
    artifact_uri: str
    row_count: int
    feature_schema: tuple[tuple[str, str], ...]
    event_time_min: datetime | None
    event_time_max: datetime | None
    source_offsets: dict[str, Any] | None
    combine: str
    parents: tuple[str, ...]
    coreset_k: int
    stats: dict[str, Any]
    created_at: datetime | None

    @classmethod
    def _from_row(
        cls, row: orm.DataVersionRow, pipeline: str, parents: tuple[str, ...]
    ) -> DataVersion:
        return cls(
            row.id,
            pipeline,
            row.content_hash,
            row.artifact_uri,
            row.row_count,
            tuple((str(n), str(t)) for n, t in row.feature_schema),
            row.event_time_min,
            row.event_time_max,
            row.source_offsets,
            row.combine,
            parents,
            row.coreset_k,
            dict(row.stats),
            row.created_at,
        )


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A registered model: a pointer to verified artifact bytes, never the bytes themselves.

    ``version`` counts up per pipeline (1, 2, …) like a model registry's version numbers.

    >>> mv = ModelVersion("mv-1", "fraud", 1, "ab", "file:///m", 3, "torch", {}, {"acc": 0.9},
    ...                   "dv-1", None, None, None)
    >>> mv.metrics["acc"]
    0.9
    """

    id: str
    pipeline: str
    version: int
    content_hash: str
    artifact_uri: str
    size_bytes: int
    framework: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    data_version_id: str
    parent_model_version_id: str | None
    training_id: str | None
    created_at: datetime | None

    @classmethod
    def _from_row(cls, row: orm.ModelVersionRow, pipeline: str) -> ModelVersion:
        return cls(
            row.id,
            pipeline,
            row.version,
            row.content_hash,
            row.artifact_uri,
            row.size_bytes,
            row.framework,
            dict(row.params),
            dict(row.metrics),
            row.data_version_id,
            row.parent_model_version_id,
            row.training_id,
            row.created_at,
        )


@dataclass(frozen=True, slots=True)
class Training:
    """One lifecycle run: what triggered it, on which data, with which config, and how it ended.

    >>> Training("tr-1", "fraud", "ep", "NEW", None, {}, {}, None, None, {}, {},
    ...          None, None, None).is_active
    True
    """

    id: str
    pipeline: str
    episode_key: str
    status: str
    reason: str | None
    trigger: dict[str, Any]
    config: dict[str, Any]
    data_version_id: str | None
    model_version_id: str | None
    metrics: dict[str, Any]
    resources: dict[str, Any]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def is_active(self) -> bool:
        """Whether this training holds its drift episode (NEW, RUNNING or COMPLETE)."""
        return self.status in orm.ACTIVE_STATUSES

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish, once both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def _from_row(cls, row: orm.TrainingRow, pipeline: str) -> Training:
        return cls(
            row.id,
            pipeline,
            row.episode_key,
            row.status,
            row.reason,
            dict(row.trigger),
            dict(row.config),
            row.data_version_id,
            row.model_version_id,
            dict(row.metrics),
            dict(row.resources),
            row.created_at,
            row.started_at,
            row.finished_at,
        )


@dataclass(frozen=True, slots=True)
class DriftEventRecord:
    """A stored drift alarm and the training it caused, if any.

    ``payload`` is the event as JSON-ready data (``driftline.schemas.DriftEvent.model_validate``
    reads it).

    >>> DriftEventRecord("d-1", "fraud", None, None, 0.3, {}, None).training_id is None
    True
    """

    drift_id: str
    pipeline: str
    training_id: str | None
    detected_at: datetime | None
    statistic: float | None
    payload: dict[str, Any]
    recorded_at: datetime | None

    @classmethod
    def _from_row(cls, row: orm.DriftEventRow, pipeline: str) -> DriftEventRecord:
        return cls(
            row.drift_id,
            pipeline,
            row.training_id,
            row.detected_at,
            row.statistic,
            dict(row.payload),
            row.recorded_at,
        )


@dataclass(frozen=True, slots=True)
class Deployment:
    """One entry of an alias's append-only history: ``model_version_id`` became live then.

    ``seq`` numbers the entries of one (pipeline, alias) from 1; ``kind`` is ``deploy`` or
    ``rollback``; ``restores_seq`` is the entry whose model this one put back in force.

    >>> Deployment("dp-1", "fraud", "champion", 1, "mv-1", None, 1, "deploy", "first",
    ...            None).kind
    'deploy'
    """

    id: str
    pipeline: str
    alias: str
    seq: int
    model_version_id: str
    previous_model_version_id: str | None
    restores_seq: int
    kind: str
    reason: str
    deployed_at: datetime | None

    @classmethod
    def _from_row(cls, row: orm.DeploymentRow, pipeline: str) -> Deployment:
        return cls(
            row.id,
            pipeline,
            row.alias,
            row.seq,
            row.model_version_id,
            row.previous_model_version_id,
            row.restores_seq,
            row.kind,
            row.reason,
            row.deployed_at,
        )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to publish once the write that produced it has committed.

    >>> OutboxMessage("fraud.model-versions", b"fraud/champion", b"{}").topic
    'fraud.model-versions'
    """

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A pending (or published) outbox message with its store id, for ``mark_published``.

    >>> OutboxItem(1, "t", None, b"v", None, None, None).published
    False
    """

    id: int
    topic: str
    key: bytes | None
    value: bytes
    deployment_id: str | None
    created_at: datetime | None
    published_at: datetime | None

    @property
    def published(self) -> bool:
        """Whether a publisher has confirmed delivery."""
        return self.published_at is not None

    @classmethod
    def _from_row(cls, row: orm.OutboxRow) -> OutboxItem:
        return cls(
            row.id,
            row.topic,
            row.key,
            row.value,
            row.deployment_id,
            row.created_at,
            row.published_at,
        )


@dataclass(frozen=True, slots=True)
class ArchiveSegment:
    """One Parquet file of archived rows or labels.

    >>> ArchiveSegment(1, "rows", "k", "file:///s", 5, None, None, None).row_count
    5
    """

    id: int
    kind: str
    segment_key: str
    artifact_uri: str
    row_count: int
    min_time: datetime | None
    max_time: datetime | None
    offsets: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LineageNode:
    """A version reached by a lineage walk, ``distance`` hops from the start, via ``via``.

    >>> LineageNode("dv-1", "data_version", 1, "mv-1", "trained_on").distance
    1
    """

    id: str
    kind: str
    distance: int
    via: str
    relation: str


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The whole lifecycle of one model version: data → training → model → deployments.

    >>> mv = ModelVersion("mv-1", "p", 1, "ab", "file:///m", 3, "torch", {}, {}, "dv-1",
    ...                   None, None, None)
    >>> dv = DataVersion("dv-1", "p", "ab", "file:///d", 10, (), None, None, None, "root", (),
    ...                  256, {}, None)
    >>> Lifecycle(mv, dv, None, None, ()).data_version.id
    'dv-1'
    """

    model_version: ModelVersion
    data_version: DataVersion
    training: Training | None
    parent_model_version: ModelVersion | None
    deployments: tuple[Deployment, ...]
    drift_events: tuple[DriftEventRecord, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class SimilarLifecycle:
    """A past data version close to the query, with the models trained on it.

    ``best_model`` is the one to transfer from (the best by the chosen metric, else the
    latest), ``None`` when nothing was trained on that data yet.

    >>> dv = DataVersion("dv-1", "p", "ab", "file:///d", 10, (), None, None, None, "root", (),
    ...                  256, {}, None)
    >>> SimilarLifecycle(dv, 0.9, (), None).best_model is None
    True
    """

    data_version: DataVersion
    similarity: float
    model_versions: tuple[ModelVersion, ...]
    best_model: ModelVersion | None
