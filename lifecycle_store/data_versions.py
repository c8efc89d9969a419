"""Data versions: immutable, content-addressed Parquet snapshots with their coreset sketch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from driftline.detectors.coreset import Coreset
from driftline.lifecycle_store import orm
from driftline.lifecycle_store._base import PipelineRef, StoreBase, pipeline_name, require_json
from driftline.lifecycle_store.artifacts import content_key
from driftline.lifecycle_store.canonical import (
    canonical_table,
    check_feature_columns,
    content_hash,
    feature_matrix,
    feature_stats,
    profile_bytes,
)
from driftline.lifecycle_store.exceptions import (
    ArtifactCorruptedError,
    NotFoundError,
    SchemaMismatchError,
    StoreError,
)
from driftline.lifecycle_store.records import DataVersion

COMBINES = ("append", "merge", "filter", "root")
TIMESTAMP_COLUMN = "timestamp"
# Snappy for readers everywhere; no dictionary pages, since trying them on unique ids and
# continuous features costs most of the write time and saves little space.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "snappy", "use_dictionary": False}
# Rows fed to the coreset sketch at most (a seeded sample of bigger snapshots).
CORESET_SAMPLE = 20_000


def data_version_id(pipeline: str, digest: str) -> str:
    """The id of the rows hashing to ``digest`` in ``pipeline``: ``dv-`` + 32 hex digits.

    >>> data_version_id("fraud", "00" * 32)[:3]
    'dv-'
    """
    return "dv-" + hashlib.sha256(f"{pipeline}\0{digest}".encode()).hexdigest()[:32]


class DataVersionsMixin(StoreBase):
    def snapshot(
        self,
        pipeline: PipelineRef,
        table: pa.Table,
        *,
        parents: Sequence[str] = (),
        combine: str = "root",
        source_offsets: dict[str, Any] | None = None,
        event_time_range: tuple[datetime, datetime] | None = None,
        coreset_k: int = 256,
    ) -> DataVersion:
        """Store ``table`` as a data version of ``pipeline``; the same rows give the same one.

        The table must hold the pipeline's (numeric) feature columns; other columns (ids,
        labels, ``timestamp``) are kept. The version's id hashes the canonical content (see
        :mod:`driftline.lifecycle_store.canonical`), so a second snapshot of the same rows returns
        the
        first version unchanged, whatever ``parents`` it names. ``combine`` says how it was
        made from ``parents``: ``append``, ``merge``, ``filter``, or ``root`` (no parents).
        The event-time range is read from a ``timestamp`` column unless given. The coreset
        sketch (``coreset_k`` points) of a snapshot larger than ``CORESET_SAMPLE`` rows is
        built from a seeded uniform sample of that many rows.
        """
        name = pipeline_name(pipeline)
        if not isinstance(table, pa.Table):
            raise StoreError(
                f"snapshot needs a pyarrow.Table, got {type(table).__name__}; "
                "use pa.Table.from_pandas(df) or pa.table({...})"
            )
        parents = tuple(dict.fromkeys(parents))
        if combine not in COMBINES:
            raise StoreError(f"combine must be one of {list(COMBINES)}, got {combine!r}")
        if (combine == "root") != (not parents):
            raise StoreError(
                f"combine={combine!r} with parents {list(parents)}: use combine='root' exactly "
                "when there are no parents"
            )
        if coreset_k < 1:
            raise StoreError(f"coreset_k must be >= 1, got {coreset_k}")
        if source_offsets is not None:
            require_json(source_offsets, "source_offsets")
        if event_time_range is not None:
            event_time_range = _checked_range(event_time_range)
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            features = session.scalar(
                sa.select(orm.PipelineRow.feature_names).where(orm.PipelineRow.id == pid)
            )
            self._check_parents(session, pid, name, parents)
        features = list(features or ())
        check_feature_columns(table, features, f"table for pipeline {name!r}")
        canonical = canonical_table(table)
        digest = content_hash(canonical)
        dv_id = data_version_id(name, digest)
        existing = self._find_data_version(dv_id)
        if existing is not None:
            return existing
        if event_time_range is None:
            event_time_range = _time_range(table)
        artifact_key = content_key("data", digest, ".parquet")
        uri = self._artifacts.put_table(artifact_key, canonical, **PARQUET_OPTIONS)
        coreset = _coreset_bytes(canonical, features, coreset_k)
        stats = feature_stats(canonical, features)
        row = orm.DataVersionRow(
            id=dv_id,
            pipeline_id=pid,
            content_hash=digest,
            artifact_key=artifact_key,
            artifact_uri=uri,
            row_count=len(table),
            feature_schema=[[f.name, str(f.type)] for f in canonical.schema],
            event_time_min=event_time_range[0] if event_time_range else None,
            event_time_max=event_time_range[1] if event_time_range else None,
            source_offsets=source_offsets,
            combine=combine,
            coreset=coreset,
            coreset_k=coreset_k,
            stats=stats,
            profile=profile_bytes(stats, features) if coreset is not None else None,
            created_at=orm.utcnow(),
        )
        try:
            with self._write() as session:
                session.add(row)
                session.flush()
                session.add_all(
                    orm.DataVersionParentRow(child_id=dv_id, parent_id=p, position=i)
                    for i, p in enumerate(parents)
                )
        except IntegrityError:
            # A concurrent writer stored the same rows first: theirs is ours.
            winner = self._find_data_version(dv_id)
            if winner is None:
                raise
            return winner
        return DataVersion._from_row(row, name, parents)

    def data_version(self, data_version_id: str) -> DataVersion:
        """The data version ``data_version_id``; :class:`NotFoundError` if unknown."""
        found = self._find_data_version(data_version_id)
        if found is None:
            raise NotFoundError(
                f"data version {data_version_id!r} does not exist; list known ones with "
                "store.data_versions(pipeline)"
            )
        return found

    def data_versions(self, pipeline: PipelineRef, limit: int | None = None) -> list[DataVersion]:
        """The pipeline's data versions, newest first."""
        with self._read() as session:
            pid = self._pipeline_id(session, pipeline)
            rows = session.scalars(
                sa.select(orm.DataVersionRow)
                .where(orm.DataVersionRow.pipeline_id == pid)
                .order_by(orm.DataVersionRow.created_at.desc(), orm.DataVersionRow.id)
                .limit(limit)
            ).all()
            return self._data_version_records(session, rows)

    def read_data_version(self, data_version_id: str, *, verify: bool = False) -> pa.Table:
        """The rows of a data version, exactly as snapshotted (minus schema metadata).

        An unreadable file raises :class:`ArtifactCorruptedError`; ``verify=True`` also
        re-hashes the rows against the version's content hash (about as costly as the read).
        """
        with self._read() as session:
            found = session.execute(
                sa.select(orm.DataVersionRow.artifact_key, orm.DataVersionRow.content_hash).where(
                    orm.DataVersionRow.id == data_version_id
                )
            ).first()
        if found is None:
            raise NotFoundError(f"data version {data_version_id!r} does not exist")
        key, expected = found
        try:
            table = self._artifacts.get_table(key)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ArtifactCorruptedError(
                f"data version {data_version_id!r} at {self._artifacts.uri(key)!r} cannot be "
                f"read ({exc}); restore the file from a backup or snapshot the rows again"
            ) from exc
        if verify and content_hash(table) != expected:
            raise ArtifactCorruptedError(
                f"data version {data_version_id!r} at {self._artifacts.uri(key)!r} no longer "
                f"hashes to {expected}; restore the file from a backup or snapshot the rows again"
            )
        return table

    def data_version_coreset(self, data_version_id: str) -> Coreset | None:
        """The coreset sketch stored with a data version (``None`` for one without rows)."""
        with self._read() as session:
            row = session.execute(
                sa.select(orm.DataVersionRow.id, orm.DataVersionRow.coreset).where(
                    orm.DataVersionRow.id == data_version_id
                )
            ).first()
        if row is None:
            raise NotFoundError(f"data version {data_version_id!r} does not exist")
        return None if row.coreset is None else Coreset.from_bytes(row.coreset)

    @staticmethod
    def _check_parents(session: Session, pid: int, name: str, parents: Sequence[str]) -> None:
        if not parents:
            return
        known = set(
            session.scalars(
                sa.select(orm.DataVersionRow.id).where(
                    orm.DataVersionRow.id.in_(parents), orm.DataVersionRow.pipeline_id == pid
                )
            )
        )
        unknown = [p for p in parents if p not in known]
        if unknown:
            raise NotFoundError(
                f"parent data versions {unknown} do not exist in pipeline {name!r}; "
                "snapshot the parents first or fix the ids"
            )

    def _find_data_version(self, dv_id: str) -> DataVersion | None:
        with self._read() as session:
            row = session.get(orm.DataVersionRow, dv_id)
            if row is None:
                return None
            return self._data_version_records(session, [row])[0]

    def _data_version_records(
        self, session: Session, rows: Sequence[orm.DataVersionRow]
    ) -> list[DataVersion]:
        parents: dict[str, list[tuple[int, str]]] = {}
        ids = [r.id for r in rows]
        for chunk in _chunks(ids):
            for link in session.scalars(
                sa.select(orm.DataVersionParentRow).where(
                    orm.DataVersionParentRow.child_id.in_(chunk)
                )
            ):
                parents.setdefault(link.child_id, []).append((link.position, link.parent_id))
        return [
            DataVersion._from_row(
                r,
                self._pipeline_name_of(session, r.pipeline_id),
                tuple(p for _, p in sorted(parents.get(r.id, []))),
            )
            for r in rows
        ]


def _coreset_bytes(table: pa.Table, features: list[str], k: int) -> bytes | None:
    if len(table) > CORESET_SAMPLE:
        # A seeded uniform sample keeps the sketch's cost flat for huge snapshots; the
        # coreset of the sample summarizes the same distribution.
        pick = np.random.default_rng(0).choice(len(table), CORESET_SAMPLE, replace=False)
        table = table.take(pa.array(np.sort(pick)))
    x = feature_matrix(table, features)
    incomplete = np.isnan(x).any(axis=1)
    if incomplete.any():
        x = x[~incomplete]
    if len(x) == 0:
        return None
    return Coreset.from_array(x, k=k, seed=0).to_bytes()


def _chunks(ids: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    # Bounded IN lists: SQLite caps bound parameters per statement.
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _checked_range(value: Any) -> tuple[datetime, datetime]:
    ok = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, datetime) for v in value)
    )
    if not ok or orm.as_utc(value[0]) > orm.as_utc(value[1]):
        raise StoreError(
            f"event_time_range must be (earliest, latest) datetimes in order, got {value!r}"
        )
    return orm.as_utc(value[0]), orm.as_utc(value[1])


def _time_range(table: pa.Table) -> tuple[datetime, datetime] | None:
    if TIMESTAMP_COLUMN not in table.column_names or len(table) == 0:
        return None
    column = table.column(TIMESTAMP_COLUMN)
    if not pa.types.is_timestamp(column.type):
        raise SchemaMismatchError(
            f"column 'timestamp' has type {column.type}; it must be a timestamp "
            "(pa.timestamp('us', tz='UTC')) or be renamed"
        )
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None or high is None:
        return None
    return orm.as_utc(low), orm.as_utc(high)
