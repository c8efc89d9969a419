"""driftline lifecycle store: versioned data, models, trainings and deployments, with lineage.

VeML's point is that an ML lifecycle is a graph of versions — which data trained which model
with which configuration, what was deployed when — and that this graph lets you transfer a
past lifecycle to new data. :class:`LifecycleStore` keeps that graph in SQLite or PostgreSQL
(SQLAlchemy 2, Alembic migrations applied on open) and the bytes (Parquet data versions, model
artifacts, archive segments) in an :class:`ArtifactStore`: a local directory or any pyarrow
filesystem URI. Errors are in :mod:`driftline.lifecycle_store.exceptions`.
"""

from driftline.lifecycle_store._base import UNSET
from driftline.lifecycle_store.archive import Archive
from driftline.lifecycle_store.artifacts import ArtifactStore
from driftline.lifecycle_store.exceptions import (
    ArtifactCorruptedError,
    ConcurrentUpdateError,
    InvalidTransitionError,
    NotFoundError,
    SchemaMismatchError,
    StoreError,
)
from driftline.lifecycle_store.records import (
    ArchiveSegment,
    DataVersion,
    Deployment,
    DriftEventRecord,
    Lifecycle,
    LineageNode,
    ModelVersion,
    OutboxItem,
    OutboxMessage,
    Pipeline,
    SimilarLifecycle,
    Training,
)
from driftline.lifecycle_store.store import LifecycleStore

__all__ = [
    "UNSET",
    "Archive",
    "ArchiveSegment",
    "ArtifactCorruptedError",
    "ArtifactStore",
    "ConcurrentUpdateError",
    "DataVersion",
    "Deployment",
    "DriftEventRecord",
    "InvalidTransitionError",
    "Lifecycle",
    "LifecycleStore",
    "LineageNode",
    "ModelVersion",
    "NotFoundError",
    "OutboxItem",
    "OutboxMessage",
    "Pipeline",
    "SchemaMismatchError",
    "SimilarLifecycle",
    "StoreError",
    "Training",
]
