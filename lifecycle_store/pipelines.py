"""Pipelines: a name, its fixed feature list and its current (declarative) config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from driftline.lifecycle_store import orm
from driftline.lifecycle_store._base import PipelineRef, StoreBase, pipeline_name, require_json
from driftline.lifecycle_store.exceptions import NotFoundError, SchemaMismatchError, StoreError
from driftline.lifecycle_store.records import Pipeline


class PipelinesMixin(StoreBase):
    def ensure_pipeline(
        self, name: str, feature_names: Sequence[str], config: dict[str, Any] | None = None
    ) -> Pipeline:
        """The pipeline ``name``, created if new; its config is replaced by ``config``.

        The feature list is fixed at creation: a different list raises
        :class:`SchemaMismatchError` (create a new pipeline for a new schema).
        """
        features = _check_features(name, feature_names)
        config = require_json(config if config is not None else {}, "config")
        if not name or len(name) > 200:
            raise StoreError(f"pipeline name {name!r} must be 1 to 200 characters")
        for _ in range(2):
            try:
                with self._write() as session:
                    row = session.scalar(
                        sa.select(orm.PipelineRow).where(orm.PipelineRow.name == name)
                    )
                    if row is None:
                        now = orm.utcnow()
                        row = orm.PipelineRow(
                            name=name,
                            feature_names=list(features),
                            config=config,
                            created_at=now,
                            updated_at=now,
                        )
                        session.add(row)
                        session.flush()
                    else:
                        if tuple(row.feature_names) != features:
                            raise SchemaMismatchError(
                                f"pipeline {name!r} has features {list(row.feature_names)}, "
                                f"got {list(features)}; pass the same features in the same "
                                "order, or use a new pipeline name for a new schema"
                            )
                        if row.config != config:
                            row.config = config
                            row.updated_at = orm.utcnow()
                    record = Pipeline._from_row(row)
            except IntegrityError:
                # Another process created it between our read and insert: read theirs.
                continue
            self._remember_pipeline(record.name, record.id)
            return record
        raise StoreError(f"could not create pipeline {name!r}; retry")  # pragma: no cover

    def pipeline(self, name: PipelineRef) -> Pipeline:
        """The pipeline called ``name``; :class:`NotFoundError` if there is none."""
        name = pipeline_name(name)
        with self._read() as session:
            row = session.scalar(sa.select(orm.PipelineRow).where(orm.PipelineRow.name == name))
            if row is None:
                raise NotFoundError(
                    f"pipeline {name!r} does not exist; create it first with "
                    f"store.ensure_pipeline({name!r}, feature_names, config)"
                )
            return Pipeline._from_row(row)

    def pipelines(self) -> list[Pipeline]:
        """Every pipeline, by name."""
        with self._read() as session:
            rows = session.scalars(sa.select(orm.PipelineRow).order_by(orm.PipelineRow.name))
            return [Pipeline._from_row(r) for r in rows]


def _check_features(name: str, feature_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(feature_names, str):
        raise SchemaMismatchError(
            f"feature_names for pipeline {name!r} must be a list of names, got the string "
            f"{feature_names!r}"
        )
    features = tuple(feature_names)
    if not features or not all(isinstance(f, str) and f for f in features):
        raise SchemaMismatchError(
            f"feature_names for pipeline {name!r} must be non-empty strings, got {list(features)}"
        )
    if len(set(features)) != len(features):
        raise SchemaMismatchError(
            f"feature_names for pipeline {name!r} repeat a name: {list(features)}"
        )
    return features
