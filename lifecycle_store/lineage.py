"""Lineage: walk the version graph (data versions, drift events, trainings, model versions,
deployments) upstream or downstream, and gather one model version's whole lifecycle.

Edges, from upstream to downstream (relation names in brackets)::

    data version ──[parent_of]──► data version
    data version ──[trained_on]──► training, model version
    drift event ──[triggered]──► training
    training ──[produced]──► model version
    model version ──[warm_start_of]──► model version
    model version ──[deployed_as]──► deployment

Each hop is one query per edge kind over the whole frontier, so a walk costs a few queries
per hop whatever the graph's size.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from driftline.lifecycle_store import orm
from driftline.lifecycle_store.data_versions import DataVersionsMixin, _chunks
from driftline.lifecycle_store.exceptions import NotFoundError, StoreError
from driftline.lifecycle_store.model_versions import ModelVersionsMixin
from driftline.lifecycle_store.records import (
    Deployment,
    DriftEventRecord,
    Lifecycle,
    LineageNode,
    ModelVersion,
    Training,
)

_PREFIX_KIND = {"dv": "data_version", "tr": "training", "mv": "model_version", "dp": "deployment"}

# (from kind, to kind, relation, column holding the upstream id, column holding the downstream
# id): the edge runs upstream → downstream.
_EDGES: tuple[tuple[str, str, str, Any, Any], ...] = (
    (
        "data_version",
        "data_version",
        "parent_of",
        orm.DataVersionParentRow.parent_id,
        orm.DataVersionParentRow.child_id,
    ),
    ("data_version", "training", "trained_on", orm.TrainingRow.data_version_id, orm.TrainingRow.id),
    (
        "data_version",
        "model_version",
        "trained_on",
        orm.ModelVersionRow.data_version_id,
        orm.ModelVersionRow.id,
    ),
    (
        "drift_event",
        "training",
        "triggered",
        orm.DriftEventRow.drift_id,
        orm.DriftEventRow.training_id,
    ),
    (
        "training",
        "model_version",
        "produced",
        orm.ModelVersionRow.training_id,
        orm.ModelVersionRow.id,
    ),
    (
        "model_version",
        "model_version",
        "warm_start_of",
        orm.ModelVersionRow.parent_model_version_id,
        orm.ModelVersionRow.id,
    ),
    (
        "model_version",
        "deployment",
        "deployed_as",
        orm.DeploymentRow.model_version_id,
        orm.DeploymentRow.id,
    ),
)


def kind_of(version_id: str) -> str:
    """The kind of version an id names, from its prefix (drift ids have none of ours).

    >>> kind_of("dv-12ab"), kind_of("mv-9"), kind_of("drift-7")
    ('data_version', 'model_version', 'drift_event')
    """
    return _PREFIX_KIND.get(version_id.split("-", 1)[0], "drift_event")


class LineageMixin(DataVersionsMixin, ModelVersionsMixin):
    def lineage(
        self, version_id: str, direction: str = "upstream", hops: int = 3
    ) -> list[LineageNode]:
        """Versions within ``hops`` edges of ``version_id``, nearest first.

        ``direction="upstream"`` follows what it was made from (data, trigger, parent model);
        ``"downstream"`` what was made from it (trainings, models, deployments).
        """
        if direction not in ("upstream", "downstream"):
            raise StoreError(f"direction must be 'upstream' or 'downstream', got {direction!r}")
        if hops < 0:
            raise StoreError(f"hops must be >= 0, got {hops}")
        start_kind = kind_of(version_id)
        upstream = direction == "upstream"
        found: list[LineageNode] = []
        with self._read() as session:
            self._require_exists(session, start_kind, version_id)
            seen = {(start_kind, version_id)}
            frontier: dict[str, set[str]] = {start_kind: {version_id}}
            for distance in range(1, hops + 1):
                nxt: dict[str, set[str]] = {}
                for src_kind, dst_kind, relation, up_col, down_col in _EDGES:
                    from_kind, to_kind = (dst_kind, src_kind) if upstream else (src_kind, dst_kind)
                    ids = frontier.get(from_kind)
                    if not ids:
                        continue
                    near, far = (down_col, up_col) if upstream else (up_col, down_col)
                    for chunk in _chunks(sorted(ids)):
                        pairs = session.execute(
                            sa.select(near, far).where(near.in_(chunk), far.is_not(None))
                        ).all()
                        for via, reached in pairs:
                            if (to_kind, reached) in seen:
                                continue
                            seen.add((to_kind, reached))
                            nxt.setdefault(to_kind, set()).add(reached)
                            found.append(LineageNode(reached, to_kind, distance, via, relation))
                if not nxt:
                    break
                frontier = nxt
        return found

    def lifecycle(self, model_version_id: str) -> Lifecycle:
        """Data version → training → model version → deployments of one model, in one call."""
        with self._read() as session:
            model = self._model_version_record(session, model_version_id)
            dv_row = session.get_one(orm.DataVersionRow, model.data_version_id)
            data = self._data_version_records(session, [dv_row])[0]
            training: Training | None = None
            drifts: tuple[DriftEventRecord, ...] = ()
            if model.training_id is not None:
                tr_row = session.get(orm.TrainingRow, model.training_id)
                if tr_row is not None:
                    training = Training._from_row(tr_row, model.pipeline)
                    drifts = tuple(
                        DriftEventRecord._from_row(r, model.pipeline)
                        for r in session.scalars(
                            sa.select(orm.DriftEventRow)
                            .where(orm.DriftEventRow.training_id == tr_row.id)
                            .order_by(orm.DriftEventRow.detected_at)
                        )
                    )
            parent: ModelVersion | None = None
            if model.parent_model_version_id is not None:
                parent = self._model_version_record(session, model.parent_model_version_id)
            deployments = tuple(
                Deployment._from_row(r, model.pipeline)
                for r in session.scalars(
                    sa.select(orm.DeploymentRow)
                    .where(orm.DeploymentRow.model_version_id == model_version_id)
                    .order_by(orm.DeploymentRow.deployed_at, orm.DeploymentRow.seq)
                )
            )
            return Lifecycle(model, data, training, parent, deployments, drifts)

    @staticmethod
    def _require_exists(session: Session, kind: str, version_id: str) -> None:
        table: Any = {
            "data_version": orm.DataVersionRow,
            "training": orm.TrainingRow,
            "model_version": orm.ModelVersionRow,
            "deployment": orm.DeploymentRow,
            "drift_event": orm.DriftEventRow,
        }[kind]
        if session.get(table, version_id) is None:
            raise NotFoundError(
                f"{kind.replace('_', ' ')} {version_id!r} does not exist; lineage takes a "
                "data version (dv-…), training (tr-…), model version (mv-…), deployment "
                "(dp-…) or drift event id"
            )
