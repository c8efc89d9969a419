"""SQLAlchemy tables of the lifecycle store (typed ORM; the schema itself lives in migrations).

These classes are private to the package: the public API returns the frozen records of
:mod:`driftline.lifecycle_store.records`, which stay valid after their session is gone. A change
here
needs a new Alembic revision in ``migrations/versions`` (``tests`` compare the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Statuses that hold an episode: at most one such training per (pipeline, episode key).
ACTIVE_STATUSES = ("NEW", "RUNNING", "COMPLETE")
_ACTIVE_SQL = "status IN ('NEW', 'RUNNING', 'COMPLETE')"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset, so store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class PipelineRow(Base):
    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    feature_names: Mapped[list[Any]]
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DataVersionRow(Base):
    __tablename__ = "data_versions"
    __table_args__ = (
        Index(None, "pipeline_id", "created_at"),
        # Covers the similarity index load, so it never reads past the coreset blobs.
        Index(None, "pipeline_id", "id", "profile"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    artifact_key: Mapped[str] = mapped_column(String(300))
    artifact_uri: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int]
    feature_schema: Mapped[list[Any]]
    event_time_min: Mapped[datetime | None]
    event_time_max: Mapped[datetime | None]
    source_offsets: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    combine: Mapped[str] = mapped_column(String(16))
    # Deferred: sketches are read only by similarity search, which selects them explicitly.
    coreset: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # Per-feature mean and log std (float64), the similarity search's shortlist vector.
    profile: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    coreset_k: Mapped[int]
    stats: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class DataVersionParentRow(Base):
    __tablename__ = "data_version_parents"

    child_id: Mapped[str] = mapped_column(ForeignKey("data_versions.id"), primary_key=True)
    parent_id: Mapped[str] = mapped_column(
        ForeignKey("data_versions.id"), primary_key=True, index=True
    )
    position: Mapped[int]


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "content_hash"),
        UniqueConstraint("pipeline_id", "version"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    version: Mapped[int]
    content_hash: Mapped[str] = mapped_column(String(64))
    artifact_key: Mapped[str] = mapped_column(String(300))
    artifact_uri: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int]
    framework: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    data_version_id: Mapped[str] = mapped_column(ForeignKey("data_versions.id"), index=True)
    parent_model_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.id"), index=True
    )
    # Not a foreign key: trainings point back at model versions, and a cycle of foreign keys
    # would need ALTERs on every backend. The store checks it on write.
    training_id: Mapped[str | None] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime]


class TrainingRow(Base):
    __tablename__ = "trainings"
    __table_args__ = (
        Index(
            "uq_trainings_active_episode",
            "pipeline_id",
            "episode_key",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
        Index(None, "pipeline_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    episode_key: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]
    data_version_id: Mapped[str | None] = mapped_column(ForeignKey("data_versions.id"), index=True)
    model_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.id"), index=True
    )
    metrics: Mapped[dict[str, Any]]
    resources: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class DriftEventRow(Base):
    __tablename__ = "drift_events"
    __table_args__ = (Index(None, "pipeline_id", "detected_at"),)

    drift_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    training_id: Mapped[str | None] = mapped_column(ForeignKey("trainings.id"), index=True)
    detected_at: Mapped[datetime]
    statistic: Mapped[float | None] = mapped_column(Float)
    payload: Mapped[dict[str, Any]]
    recorded_at: Mapped[datetime]


class DeploymentRow(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "alias", "seq"),
        Index(None, "pipeline_id", "alias", "deployed_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    alias: Mapped[str] = mapped_column(String(100))
    # Position in the alias's append-only history; the unique constraint on it is what makes
    # two racing writers produce one history.
    seq: Mapped[int]
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    previous_model_version_id: Mapped[str | None] = mapped_column(String(40))
    # The seq of the deployment this entry puts back in force (itself for a plain deploy).
    restores_seq: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    deployed_at: Mapped[datetime]


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index(None, "published_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(300))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    deployment_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class ArchiveSegmentRow(Base):
    __tablename__ = "archive_segments"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "kind", "segment_key"),
        Index(None, "pipeline_id", "kind", "max_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    kind: Mapped[str] = mapped_column(String(16))
    segment_key: Mapped[str] = mapped_column(String(64))
    artifact_key: Mapped[str] = mapped_column(String(300))
    row_count: Mapped[int]
    min_time: Mapped[datetime | None]
    max_time: Mapped[datetime | None]
    offsets: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
