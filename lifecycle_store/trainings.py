"""Trainings (lifecycle runs) and the drift events that cause them.

One drift *episode* (``episode_key``) gets at most one training that is NEW, RUNNING or
COMPLETE: a partial unique index enforces it in the database, so two retrainer processes
racing on the same alarm get one training between them. FAILED and SKIPPED trainings release
the episode, so a later alarm may train once labels arrive or the failure is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import driftline.schemas as schemas
from driftline.lifecycle_store import orm
from driftline.lifecycle_store._base import (
    UNSET,
    PipelineRef,
    StoreBase,
    Unset,
    new_id,
    pipeline_name,
    require_json,
)
from driftline.lifecycle_store.exceptions import (
    ConcurrentUpdateError,
    InvalidTransitionError,
    NotFoundError,
    StoreError,
)
from driftline.lifecycle_store.records import DriftEventRecord, Training

if TYPE_CHECKING:
    pass

STATUSES = ("NEW", "RUNNING", "COMPLETE", "FAILED", "SKIPPED")
TERMINAL = ("COMPLETE", "FAILED", "SKIPPED")
_NEXT = {
    "NEW": {"NEW", "RUNNING", "COMPLETE", "FAILED", "SKIPPED"},
    "RUNNING": {"RUNNING", "COMPLETE", "FAILED", "SKIPPED"},
}


class TrainingsMixin(StoreBase):
    def begin_training(
        self,
        pipeline: PipelineRef,
        *,
        episode_key: str,
        trigger: dict[str, Any],
        config: dict[str, Any],
        drift_ids: Sequence[str] = (),
    ) -> tuple[Training, bool]:
        """Claim the drift episode ``episode_key`` for a new training.

        Returns ``(training, True)`` when this call created it, or ``(existing, False)`` when
        the episode already has a NEW, RUNNING or COMPLETE training (the caller should not
        train). Recorded ``drift_ids`` are linked to the returned training either way.
        """
        name = pipeline_name(pipeline)
        trigger = require_json(trigger, "trigger")
        config = require_json(config, "config")
        if not episode_key:
            raise StoreError("episode_key must be a non-empty string, e.g. DriftEvent.episode_key")
        for _ in range(5):
            try:
                with self._write() as session:
                    pid = self._pipeline_id(session, name)
                    existing = self._active_training(session, pid, episode_key)
                    if existing is not None:
                        self._link_drifts(session, pid, drift_ids, existing.id)
                        return Training._from_row(existing, name), False
                    now = orm.utcnow()
                    row = orm.TrainingRow(
                        id=new_id("tr"),
                        pipeline_id=pid,
                        episode_key=episode_key,
                        status="NEW",
                        reason=None,
                        trigger=trigger,
                        config=config,
                        metrics={},
                        resources={},
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.flush()
                    self._link_drifts(session, pid, drift_ids, row.id)
                    return Training._from_row(row, name), True
            except IntegrityError:
                # Another process claimed the episode between our read and insert.
                continue
        raise ConcurrentUpdateError(
            f"could not claim episode {episode_key!r} of pipeline {name!r}; retry"
        )

    def update_training(
        self,
        training_id: str,
        *,
        status: str | None = None,
        reason: str | Unset | None = UNSET,
        data_version_id: str | Unset | None = UNSET,
        model_version_id: str | Unset | None = UNSET,
        metrics: dict[str, Any] | None = None,
        resources: dict[str, Any] | None = None,
    ) -> Training:
        """Change a training's status and results; unchanged fields are left alone.

        Allowed status changes: NEW → RUNNING/COMPLETE/FAILED/SKIPPED and RUNNING →
        COMPLETE/FAILED/SKIPPED; finished trainings are immutable. ``metrics`` and
        ``resources`` are merged into what is stored. RUNNING sets ``started_at``; a final
        status sets ``finished_at``.
        """
        if status is not None and status not in STATUSES:
            raise StoreError(f"status must be one of {list(STATUSES)}, got {status!r}")
        if metrics is not None:
            require_json(metrics, "metrics")
        if resources is not None:
            require_json(resources, "resources")
        with self._write() as session:
            row = session.get(orm.TrainingRow, training_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"training {training_id!r} does not exist")
            name = self._pipeline_name_of(session, row.pipeline_id)
            if row.status in TERMINAL:
                raise InvalidTransitionError(
                    f"training {training_id!r} is {row.status} and cannot change; begin a new "
                    "training for the episode instead"
                )
            if status is not None and status not in _NEXT[row.status]:
                raise InvalidTransitionError(
                    f"training {training_id!r} cannot go from {row.status} to {status}"
                )
            self._check_training_refs(session, row, data_version_id, model_version_id)
            now = orm.utcnow()
            if status is not None and status != row.status:
                if status == "RUNNING" or (status in TERMINAL and row.started_at is None):
                    row.started_at = now
                if status in TERMINAL:
                    row.finished_at = now
                row.status = status
            if not isinstance(reason, Unset):
                row.reason = reason
            if not isinstance(data_version_id, Unset):
                row.data_version_id = data_version_id
            if not isinstance(model_version_id, Unset):
                row.model_version_id = model_version_id
            if metrics:
                row.metrics = {**row.metrics, **metrics}
            if resources:
                row.resources = {**row.resources, **resources}
            row.updated_at = now
            try:
                session.flush()
            except IntegrityError:
                raise ConcurrentUpdateError(
                    f"training {training_id!r} could not change: its episode "
                    f"{row.episode_key!r} is already held by another training"
                ) from None
            return Training._from_row(row, name)

    def training(self, training_id: str) -> Training:
        """The training ``training_id``; :class:`NotFoundError` if unknown."""
        with self._read() as session:
            row = session.get(orm.TrainingRow, training_id)
            if row is None:
                raise NotFoundError(f"training {training_id!r} does not exist")
            return Training._from_row(row, self._pipeline_name_of(session, row.pipeline_id))

    def trainings(
        self,
        pipeline: PipelineRef,
        limit: int | None = 100,
        *,
        status: str | None = None,
        episode_key: str | None = None,
    ) -> list[Training]:
        """The pipeline's trainings, newest first, optionally of one status or episode."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            query = sa.select(orm.TrainingRow).where(orm.TrainingRow.pipeline_id == pid)
            if status is not None:
                query = query.where(orm.TrainingRow.status == status)
            if episode_key is not None:
                query = query.where(orm.TrainingRow.episode_key == episode_key)
            rows = session.scalars(
                query.order_by(orm.TrainingRow.created_at.desc(), orm.TrainingRow.id).limit(limit)
            ).all()
            return [Training._from_row(r, name) for r in rows]

    def record_drift(self, event: schemas.DriftEvent) -> DriftEventRecord:
        """Store a drift alarm (idempotent on ``drift_id``: a re-delivery changes nothing)."""
        payload = event.model_dump(mode="json")
        try:
            with self._write() as session:
                pid = self._pipeline_id(session, event.pipeline)
                row = session.get(orm.DriftEventRow, event.drift_id)
                if row is None:
                    row = orm.DriftEventRow(
                        drift_id=event.drift_id,
                        pipeline_id=pid,
                        training_id=None,
                        detected_at=event.detected_at,
                        statistic=float(event.statistic),
                        payload=payload,
                        recorded_at=orm.utcnow(),
                    )
                    session.add(row)
                    session.flush()
                return DriftEventRecord._from_row(row, event.pipeline)
        except IntegrityError:
            return self.drift_event(event.drift_id)

    def drift_event(self, drift_id: str) -> DriftEventRecord:
        """The recorded drift event ``drift_id``; :class:`NotFoundError` if unknown."""
        with self._read() as session:
            row = session.get(orm.DriftEventRow, drift_id)
            if row is None:
                raise NotFoundError(f"drift event {drift_id!r} has not been recorded")
            return DriftEventRecord._from_row(row, self._pipeline_name_of(session, row.pipeline_id))

    def drift_events(
        self,
        pipeline: PipelineRef,
        limit: int | None = 100,
        *,
        training_id: str | None = None,
    ) -> list[DriftEventRecord]:
        """The pipeline's drift events, newest first (optionally those of one training)."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            query = sa.select(orm.DriftEventRow).where(orm.DriftEventRow.pipeline_id == pid)
            if training_id is not None:
                query = query.where(orm.DriftEventRow.training_id == training_id)
            rows = session.scalars(
                query.order_by(orm.DriftEventRow.detected_at.desc()).limit(limit)
            ).all()
            return [DriftEventRecord._from_row(r, name) for r in rows]

    @staticmethod
    def _active_training(session: Session, pid: int, episode_key: str) -> orm.TrainingRow | None:
        return session.scalar(
            sa.select(orm.TrainingRow).where(
                orm.TrainingRow.pipeline_id == pid,
                orm.TrainingRow.episode_key == episode_key,
                orm.TrainingRow.status.in_(orm.ACTIVE_STATUSES),
            )
        )

    @staticmethod
    def _link_drifts(
        session: Session, pid: int, drift_ids: Sequence[str], training_id: str
    ) -> None:
        if not drift_ids:
            return
        rows = session.scalars(
            sa.select(orm.DriftEventRow).where(orm.DriftEventRow.drift_id.in_(list(drift_ids)))
        ).all()
        found = {r.drift_id for r in rows if r.pipeline_id == pid}
        missing = [d for d in drift_ids if d not in found]
        if missing:
            raise NotFoundError(
                f"drift events {missing} have not been recorded in this pipeline; call "
                "store.record_drift(event) first"
            )
        for r in rows:
            r.training_id = training_id

    @staticmethod
    def _check_training_refs(
        session: Session,
        row: orm.TrainingRow,
        data_version_id: str | Unset | None,
        model_version_id: str | Unset | None,
    ) -> None:
        if isinstance(data_version_id, str):
            dv_pid = session.scalar(
                sa.select(orm.DataVersionRow.pipeline_id).where(
                    orm.DataVersionRow.id == data_version_id
                )
            )
            if dv_pid != row.pipeline_id:
                raise NotFoundError(
                    f"data version {data_version_id!r} does not exist in the pipeline of "
                    f"training {row.id!r}"
                )
        if isinstance(model_version_id, str):
            mv_pid = session.scalar(
                sa.select(orm.ModelVersionRow.pipeline_id).where(
                    orm.ModelVersionRow.id == model_version_id
                )
            )
            if mv_pid != row.pipeline_id:
                raise NotFoundError(
                    f"model version {model_version_id!r} does not exist in the pipeline of "
                    f"training {row.id!r}"
                )
