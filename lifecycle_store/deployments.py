"""Deployments: aliases (``champion``, ``challenger``, …) with an append-only history, and the
outbox of messages to publish about them.

Each (pipeline, alias) has a history numbered ``seq`` = 1, 2, …; the alias points at the model
of its highest entry. A deploy appends entry ``head + 1``; a unique constraint on
``(pipeline, alias, seq)`` means two writers racing to append the same number get one winner,
so the history never forks. With ``expected_current`` the loser gets
:class:`ConcurrentUpdateError` (compare-and-set); without, it re-reads and appends after the
winner.

**Outbox.** Publishing a deployment to Kafka and recording it cannot be one transaction. So
``deploy(..., outbox=...)`` writes the deployment *and* the message to publish in one database
transaction; a publisher then sends ``pending_outbox()`` and calls ``mark_published(ids)``
after the broker acknowledged. A crash before the commit leaves neither; a crash after it
leaves a pending message that the next publisher run sends; a crash between send and mark
re-sends it, which is harmless because ``{p}.model-versions`` is compacted and keyed by
``{p}/{alias}`` and the message is the same. So a published version is always one the store
knows, and a recorded deployment is always published eventually.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from driftline.lifecycle_store import orm
from driftline.lifecycle_store._base import (
    UNSET,
    PipelineRef,
    StoreBase,
    Unset,
    new_id,
    pipeline_name,
)
from driftline.lifecycle_store.exceptions import ConcurrentUpdateError, NotFoundError, StoreError
from driftline.lifecycle_store.records import Deployment, ModelVersion, OutboxItem, OutboxMessage

OutboxFactory = Callable[[Deployment, ModelVersion], OutboxMessage]
Outbox = OutboxMessage | OutboxFactory | None


_RETRIES = 20


class DeploymentsMixin(StoreBase):
    def deploy(
        self,
        pipeline: PipelineRef,
        alias: str,
        model_version_id: str,
        *,
        reason: str,
        expected_current: str | Unset | None = UNSET,
        outbox: Outbox = None,
        deployed_at: datetime | None = None,
    ) -> Deployment:
        """Point ``alias`` at ``model_version_id`` by appending a history entry.

        ``expected_current`` makes it a compare-and-set: the alias must currently point at
        that model version (``None``: must not exist yet), else :class:`ConcurrentUpdateError`
        and nothing is written. ``outbox`` is a message to publish, or a function of the new
        deployment and its model version returning one, stored in the same transaction (the
        function runs inside it: it may read the store but not write to it; if it raises,
        nothing is written).
        ``deployed_at`` defaults to now (give event time when replaying history).
        """
        return self._append(
            pipeline,
            alias,
            lambda session, head: model_version_id,
            kind="deploy",
            reason=reason,
            expected_current=expected_current,
            outbox=outbox,
            deployed_at=deployed_at,
        )

    def rollback(
        self,
        pipeline: PipelineRef,
        alias: str = "champion",
        *,
        reason: str,
        outbox: Outbox = None,
        deployed_at: datetime | None = None,
    ) -> Deployment:
        """Undo the alias's latest deployment by re-deploying what was live before it.

        The rollback is a new history entry (history is never rewritten). Rolling back again
        undoes the deployment before that, and so on; with nothing left to undo it raises
        :class:`StoreError`.
        """
        return self._append(
            pipeline,
            alias,
            self._rollback_target,
            kind="rollback",
            reason=reason,
            expected_current=UNSET,
            outbox=outbox,
            deployed_at=deployed_at,
        )

    def current(self, pipeline: PipelineRef, alias: str = "champion") -> ModelVersion | None:
        """The model version ``alias`` points at now, or ``None`` if it was never deployed."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            head = _head(session, pid, alias)
            if head is None:
                return None
            return ModelVersion._from_row(
                session.get_one(orm.ModelVersionRow, head.model_version_id), name
            )

    def aliases(self, pipeline: PipelineRef) -> dict[str, ModelVersion]:
        """Every alias of the pipeline and the model version it points at now."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            latest = (
                sa.select(orm.DeploymentRow.alias, sa.func.max(orm.DeploymentRow.seq).label("s"))
                .where(orm.DeploymentRow.pipeline_id == pid)
                .group_by(orm.DeploymentRow.alias)
                .subquery()
            )
            rows = session.execute(
                sa.select(orm.DeploymentRow.alias, orm.ModelVersionRow)
                .join(
                    latest,
                    sa.and_(
                        orm.DeploymentRow.alias == latest.c.alias,
                        orm.DeploymentRow.seq == latest.c.s,
                    ),
                )
                .join(
                    orm.ModelVersionRow,
                    orm.ModelVersionRow.id == orm.DeploymentRow.model_version_id,
                )
                .where(orm.DeploymentRow.pipeline_id == pid)
            ).all()
            return {alias: ModelVersion._from_row(mv, name) for alias, mv in rows}

    def live_at(self, pipeline: PipelineRef, alias: str, t: datetime) -> ModelVersion | None:
        """The model version ``alias`` pointed at, at time ``t`` (``None`` before any)."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            row = session.scalar(
                sa.select(orm.DeploymentRow)
                .where(
                    orm.DeploymentRow.pipeline_id == pid,
                    orm.DeploymentRow.alias == alias,
                    orm.DeploymentRow.deployed_at <= orm.as_utc(t),
                )
                .order_by(orm.DeploymentRow.seq.desc())
                .limit(1)
            )
            if row is None:
                return None
            return ModelVersion._from_row(
                session.get_one(orm.ModelVersionRow, row.model_version_id), name
            )

    def history(self, pipeline: PipelineRef, alias: str = "champion") -> list[Deployment]:
        """Every deployment of ``alias``, oldest first."""
        name = pipeline_name(pipeline)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            rows = session.scalars(
                sa.select(orm.DeploymentRow)
                .where(orm.DeploymentRow.pipeline_id == pid, orm.DeploymentRow.alias == alias)
                .order_by(orm.DeploymentRow.seq)
            ).all()
            return [Deployment._from_row(r, name) for r in rows]

    def deployments_of(self, model_version_id: str) -> list[Deployment]:
        """Every deployment of one model version (any alias), oldest first."""
        with self._read() as session:
            rows = session.scalars(
                sa.select(orm.DeploymentRow)
                .where(orm.DeploymentRow.model_version_id == model_version_id)
                .order_by(orm.DeploymentRow.deployed_at, orm.DeploymentRow.seq)
            ).all()
            return [
                Deployment._from_row(r, self._pipeline_name_of(session, r.pipeline_id))
                for r in rows
            ]

    def enqueue(self, message: OutboxMessage) -> OutboxItem:
        """Add a message to the outbox on its own (deployments add theirs atomically)."""
        with self._write() as session:
            row = _outbox_row(message, None)
            session.add(row)
            session.flush()
            return OutboxItem._from_row(row)

    def pending_outbox(self, limit: int = 100) -> list[OutboxItem]:
        """Messages not yet marked published, oldest first (publish them in this order)."""
        with self._read() as session:
            rows = session.scalars(
                sa.select(orm.OutboxRow)
                .where(orm.OutboxRow.published_at.is_(None))
                .order_by(orm.OutboxRow.id)
                .limit(limit)
            ).all()
            return [OutboxItem._from_row(r) for r in rows]

    def mark_published(self, ids: Sequence[int]) -> int:
        """Mark outbox messages as delivered; returns how many were pending."""
        if not ids:
            return 0
        with self._write() as session:
            result = session.execute(
                sa.update(orm.OutboxRow)
                .where(orm.OutboxRow.id.in_(list(ids)), orm.OutboxRow.published_at.is_(None))
                .values(published_at=orm.utcnow())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def _append(
        self,
        pipeline: PipelineRef,
        alias: str,
        target: Callable[[Session, orm.DeploymentRow | None], str],
        *,
        kind: str,
        reason: str,
        expected_current: str | Unset | None,
        outbox: Outbox,
        deployed_at: datetime | None,
    ) -> Deployment:
        name = pipeline_name(pipeline)
        if not alias or len(alias) > 64:
            raise StoreError(f"alias must be 1 to 64 characters, got {alias!r}")
        if not isinstance(reason, str):
            raise StoreError(f"reason must be a string, got {reason!r}")
        for _ in range(_RETRIES):
            try:
                with self._write() as session:
                    pid = self._pipeline_id(session, name)
                    head = _head(session, pid, alias)
                    current = head.model_version_id if head is not None else None
                    if not isinstance(expected_current, Unset) and current != expected_current:
                        raise ConcurrentUpdateError(
                            f"alias {alias!r} of pipeline {name!r} points at {current!r}, "
                            f"not the expected {expected_current!r}; re-read it and decide again"
                        )
                    mv_id = target(session, head)
                    mv = session.get(orm.ModelVersionRow, mv_id)
                    if mv is None or mv.pipeline_id != pid:
                        raise NotFoundError(
                            f"model version {mv_id!r} does not exist in pipeline {name!r}; "
                            "register it first with store.register_model(...)"
                        )
                    seq = 1 if head is None else head.seq + 1
                    row = orm.DeploymentRow(
                        id=new_id("dp"),
                        pipeline_id=pid,
                        alias=alias,
                        seq=seq,
                        model_version_id=mv_id,
                        previous_model_version_id=current,
                        restores_seq=seq if kind == "deploy" else self._restored_seq(session, head),
                        kind=kind,
                        reason=reason,
                        deployed_at=orm.as_utc(deployed_at) if deployed_at else orm.utcnow(),
                    )
                    session.add(row)
                    session.flush()
                    record = Deployment._from_row(row, name)
                    if outbox is not None:
                        message = (
                            outbox
                            if isinstance(outbox, OutboxMessage)
                            else outbox(record, ModelVersion._from_row(mv, name))
                        )
                        session.add(_outbox_row(message, row.id))
                    return record
            except IntegrityError:
                if not isinstance(expected_current, Unset):
                    raise ConcurrentUpdateError(
                        f"another writer moved alias {alias!r} of pipeline {name!r} at the same "
                        "time; re-read it with store.current() and decide again"
                    ) from None
        raise ConcurrentUpdateError(
            f"alias {alias!r} of pipeline {name!r} kept changing under us; retry"
        )

    def _rollback_target(self, session: Session, head: orm.DeploymentRow | None) -> str:
        return _row_at(session, head, self._restored_seq(session, head)).model_version_id

    @staticmethod
    def _restored_seq(session: Session, head: orm.DeploymentRow | None) -> int:
        # Undo the deployment in force: go to what was in force just before it was made.
        if head is None:
            raise StoreError("nothing to roll back: the alias was never deployed")
        in_force = head.restores_seq
        if in_force <= 1:
            raise StoreError(
                f"nothing to roll back: alias {head.alias!r} is at its first deployment"
            )
        return _row_at(session, head, in_force - 1).restores_seq


def _head(session: Session, pid: int, alias: str) -> orm.DeploymentRow | None:
    return session.scalar(
        sa.select(orm.DeploymentRow)
        .where(orm.DeploymentRow.pipeline_id == pid, orm.DeploymentRow.alias == alias)
        .order_by(orm.DeploymentRow.seq.desc())
        .limit(1)
    )


def _row_at(session: Session, head: orm.DeploymentRow | None, seq: int) -> orm.DeploymentRow:
    assert head is not None
    row = session.scalar(
        sa.select(orm.DeploymentRow).where(
            orm.DeploymentRow.pipeline_id == head.pipeline_id,
            orm.DeploymentRow.alias == head.alias,
            orm.DeploymentRow.seq == seq,
        )
    )
    if row is None:  # pragma: no cover - seqs are dense by construction
        raise StoreError(f"deployment history of alias {head.alias!r} lacks entry {seq}")
    return row


def _outbox_row(message: OutboxMessage, deployment_id: str | None) -> orm.OutboxRow:
    if not isinstance(message, OutboxMessage):
        raise StoreError(f"outbox must be an OutboxMessage, got {type(message).__name__}")
    return orm.OutboxRow(
        topic=message.topic,
        key=message.key,
        value=message.value,
        deployment_id=deployment_id,
        created_at=orm.utcnow(),
        published_at=None,
    )
