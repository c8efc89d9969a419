"""Model versions: content-hashed artifacts with their parameters, metrics and lineage."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from driftline.lifecycle_store import orm
from driftline.lifecycle_store._base import PipelineRef, StoreBase, pipeline_name, require_json
from driftline.lifecycle_store.artifacts import content_key, sha256_hex
from driftline.lifecycle_store.exceptions import (
    ArtifactCorruptedError,
    ConcurrentUpdateError,
    NotFoundError,
    StoreError,
)
from driftline.lifecycle_store.records import ModelVersion

_VERSION_RETRIES = 20


class ModelVersionsMixin(StoreBase):
    def register_model(
        self,
        pipeline: PipelineRef,
        artifact: bytes,
        *,
        framework: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        data_version_id: str,
        parent_model_version_id: str | None = None,
        training_id: str | None = None,
    ) -> ModelVersion:
        """Store ``artifact`` bytes and register them as the pipeline's next model version.

        Idempotent: registering the same bytes again in the same pipeline returns the first
        version unchanged. ``data_version_id`` is the data it was trained on,
        ``parent_model_version_id`` the model it was warm-started from, ``training_id`` the
        training that produced it; all must exist.
        """
        name = pipeline_name(pipeline)
        if not isinstance(artifact, bytes | bytearray | memoryview):
            raise StoreError(
                f"artifact must be bytes, got {type(artifact).__name__}; serialize the model "
                "first (safetensors, skops, …)"
            )
        if not framework:
            raise StoreError("framework must name the library, e.g. 'torch' or 'sklearn'")
        params = require_json(params, "params")
        metrics = require_json(metrics, "metrics")
        artifact = bytes(artifact)
        digest = sha256_hex(artifact)
        mv_id = "mv-" + hashlib.sha256(f"{name}\0{digest}".encode()).hexdigest()[:32]
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            existing = session.get(orm.ModelVersionRow, mv_id)
            if existing is not None:
                return ModelVersion._from_row(existing, name)
            self._check_model_refs(
                session, pid, name, data_version_id, parent_model_version_id, training_id
            )
        key = content_key("models", digest, ".bin")
        uri = self._artifacts.put(key, artifact)
        for _ in range(_VERSION_RETRIES):
            try:
                with self._write() as session:
                    latest = session.scalar(
                        sa.select(sa.func.max(orm.ModelVersionRow.version)).where(
                            orm.ModelVersionRow.pipeline_id == pid
                        )
                    )
                    row = orm.ModelVersionRow(
                        id=mv_id,
                        pipeline_id=pid,
                        version=(latest or 0) + 1,
                        content_hash=digest,
                        artifact_key=key,
                        artifact_uri=uri,
                        size_bytes=len(artifact),
                        framework=framework,
                        params=params,
                        metrics=metrics,
                        data_version_id=data_version_id,
                        parent_model_version_id=parent_model_version_id,
                        training_id=training_id,
                        created_at=orm.utcnow(),
                    )
                    session.add(row)
                return ModelVersion._from_row(row, name)
            except IntegrityError:
                with self._read() as session:
                    existing = session.get(orm.ModelVersionRow, mv_id)
                    if existing is not None:
                        return ModelVersion._from_row(existing, name)
                # Another model took our version number: take the next one.
        raise ConcurrentUpdateError(
            f"could not allocate a version number for pipeline {name!r} after "
            f"{_VERSION_RETRIES} tries; retry register_model"
        )

    def model_version(self, model_version_id: str) -> ModelVersion:
        """The model version ``model_version_id``; :class:`NotFoundError` if unknown."""
        with self._read() as session:
            return self._model_version_record(session, model_version_id)

    def model_versions(
        self,
        pipeline: PipelineRef,
        *,
        data_version_id: str | None = None,
        limit: int | None = None,
    ) -> list[ModelVersion]:
        """The pipeline's model versions (optionally those trained on one data version),
        newest first."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            query = sa.select(orm.ModelVersionRow).where(orm.ModelVersionRow.pipeline_id == pid)
            if data_version_id is not None:
                query = query.where(orm.ModelVersionRow.data_version_id == data_version_id)
            rows = session.scalars(
                query.order_by(orm.ModelVersionRow.version.desc()).limit(limit)
            ).all()
            return [ModelVersion._from_row(r, name) for r in rows]

    def load_model_artifact(self, model_version_id: str) -> bytes:
        """The artifact bytes of a model version, verified against its sha256.

        Raises :class:`ArtifactCorruptedError` if the stored bytes changed since registration.
        """
        with self._read() as session:
            row = session.get(orm.ModelVersionRow, model_version_id)
            if row is None:
                raise NotFoundError(f"model version {model_version_id!r} does not exist")
            key, expected, uri = row.artifact_key, row.content_hash, row.artifact_uri
        data = self._artifacts.get(key)
        actual = sha256_hex(data)
        if actual != expected:
            raise ArtifactCorruptedError(
                f"artifact {uri!r} of model version {model_version_id!r} has sha256 {actual}, "
                f"expected {expected}; restore it from a backup or register the model again"
            )
        return data

    def _model_version_record(self, session: Session, model_version_id: str) -> ModelVersion:
        row = session.get(orm.ModelVersionRow, model_version_id)
        if row is None:
            raise NotFoundError(
                f"model version {model_version_id!r} does not exist; list known ones with "
                "store.model_versions(pipeline)"
            )
        return ModelVersion._from_row(row, self._pipeline_name_of(session, row.pipeline_id))

    @staticmethod
    def _check_model_refs(
        session: Session,
        pid: int,
        name: str,
        data_version_id: str,
        parent_model_version_id: str | None,
        training_id: str | None,
    ) -> None:
        dv_pid = session.scalar(
            sa.select(orm.DataVersionRow.pipeline_id).where(
                orm.DataVersionRow.id == data_version_id
            )
        )
        if dv_pid != pid:
            raise NotFoundError(
                f"data version {data_version_id!r} does not exist in pipeline {name!r}; "
                "snapshot the training data first and pass its id"
            )
        if parent_model_version_id is not None:
            parent_pid = session.scalar(
                sa.select(orm.ModelVersionRow.pipeline_id).where(
                    orm.ModelVersionRow.id == parent_model_version_id
                )
            )
            if parent_pid is None:
                raise NotFoundError(
                    f"parent model version {parent_model_version_id!r} does not exist"
                )
        if training_id is not None:
            training_pid = session.scalar(
                sa.select(orm.TrainingRow.pipeline_id).where(orm.TrainingRow.id == training_id)
            )
            if training_pid != pid:
                raise NotFoundError(f"training {training_id!r} does not exist in pipeline {name!r}")
