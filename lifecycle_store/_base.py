"""What every part of the store API shares: the engine, the artifact store, sessions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from driftline.lifecycle_store import orm
from driftline.lifecycle_store.artifacts import ArtifactStore
from driftline.lifecycle_store.engine import WRITE
from driftline.lifecycle_store.exceptions import NotFoundError, StoreError
from driftline.lifecycle_store.records import Pipeline

PipelineRef = str | Pipeline


class Unset:
    """Type of :data:`UNSET`: "argument not given", where ``None`` is a meaningful value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def new_id(prefix: str) -> str:
    """A random id with a readable prefix (``tr-…``, ``dp-…``)."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def pipeline_name(pipeline: PipelineRef) -> str:
    """The name of a pipeline given by name or record."""
    return pipeline.name if isinstance(pipeline, Pipeline) else pipeline


def require_json(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a dict; a clear error otherwise (it is stored as JSON)."""
    if not isinstance(value, dict):
        raise StoreError(f"{what} must be a dict of JSON values, got {type(value).__name__}")
    return value


class StoreBase:
    """Engine, artifacts and session helpers; the public API is :class:`LifecycleStore`."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**{WRITE: True})
        self._artifacts = artifacts
        # Pipeline ids and names never change once created, so they are safe to cache.
        self._pipeline_ids: dict[str, int] = {}
        self._pipeline_names: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for ad-hoc queries; the schema is private)."""
        return self._engine

    @property
    def artifacts(self) -> ArtifactStore:
        """Where artifacts (Parquet data versions, model bytes, archive segments) live."""
        return self._artifacts

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _pipeline_id(self, session: Session, pipeline: PipelineRef) -> int:
        name = pipeline_name(pipeline)
        cached = self._pipeline_ids.get(name)
        if cached is not None:
            return cached
        pid = session.scalar(sa.select(orm.PipelineRow.id).where(orm.PipelineRow.name == name))
        if pid is None:
            raise NotFoundError(
                f"pipeline {name!r} does not exist; create it first with "
                f"store.ensure_pipeline({name!r}, feature_names, config)"
            )
        self._remember_pipeline(name, pid)
        return pid

    def _pipeline_name_of(self, session: Session, pipeline_id: int) -> str:
        cached = self._pipeline_names.get(pipeline_id)
        if cached is not None:
            return cached
        name = session.scalar(
            sa.select(orm.PipelineRow.name).where(orm.PipelineRow.id == pipeline_id)
        )
        if name is None:
            raise NotFoundError(f"pipeline id {pipeline_id} does not exist")
        self._remember_pipeline(name, pipeline_id)
        return name

    def _remember_pipeline(self, name: str, pipeline_id: int) -> None:
        with self._lock:
            self._pipeline_ids[name] = pipeline_id
            self._pipeline_names[pipeline_id] = name
