"""The archive: raw inference rows and delayed labels of a pipeline, as Parquet segments.

The monitor appends batches of rows on the ingest path; data versions are snapshotted from
what the archive holds. Each append writes one segment file and records it (row count,
event-time range, source offsets). Delivery is at-least-once, so a segment's key is derived
from its source offsets (``topic/partition/first-last`` of every partition it covers), or
from its content when it has none: re-appending a re-delivered batch writes nothing. Rows
re-delivered in a differently cut batch are dropped on read, by ``event_id``.

A re-delivered row is the same row twice. Two *different* rows under one ``event_id`` (other
feature values or event time: e.g. two files replayed with the same ids) are a conflict: no
copy can be trusted to be the one a label refers to. ``read_rows`` still keeps the first copy;
``read_rows_checked`` leaves such events out and names them, for the trainer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from driftline.lifecycle_store import orm
from driftline.lifecycle_store.artifacts import content_key
from driftline.lifecycle_store.canonical import content_hash
from driftline.lifecycle_store.exceptions import SchemaMismatchError, StoreError
from driftline.lifecycle_store.label_types import concat_labels
from driftline.lifecycle_store.records import ArchiveSegment

if TYPE_CHECKING:
    from driftline.lifecycle_store.store import LifecycleStore

__all__ = ["SOURCE_COLUMNS", "Archive", "CheckedRows"]

SOURCE_COLUMNS = ("topic", "partition", "offset")
_ROWS, _LABELS = "rows", "labels"
# Random floats do not compress or dictionary-encode: skip both costs on the ingest path and
# keep a fast codec for the columns that do compress.
_SEGMENT_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": ["topic"],
    "write_statistics": ["timestamp", "offset", "partition"],
}


@dataclass(frozen=True)
class CheckedRows:
    """Rows read without the events archived in conflicting copies, and those events' ids."""

    table: pa.Table
    conflicting_ids: list[str]


class Archive:
    """Raw rows and labels of one pipeline. Get it with ``store.archive(pipeline)``.

    >>> import tempfile, datetime as dt, pyarrow as pa
    >>> from driftline.lifecycle_store import LifecycleStore
    >>> d = tempfile.mkdtemp()
    >>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/artifacts")
    >>> _ = store.ensure_pipeline("demo", ["x"])
    >>> t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    >>> rows = pa.table({"event_id": ["a", "b"], "timestamp": [t0, t0], "x": [1.0, 2.0],
    ...                  "topic": ["demo.inputs"] * 2, "partition": [0, 0], "offset": [0, 1]})
    >>> archive = store.archive("demo")
    >>> archive.append_rows(rows).row_count, archive.append_rows(rows) is None
    (2, True)
    >>> archive.read_rows().column("x").to_pylist(), archive.row_count()
    ([1.0, 2.0], 2)
    >>> store.close()
    """

    def __init__(self, store: LifecycleStore, pipeline: str, pipeline_id: int) -> None:
        self._store = store
        self.pipeline = pipeline
        self._pid = pipeline_id
        self._features: tuple[str, ...] = store.pipeline(pipeline).feature_names

    def __repr__(self) -> str:
        return f"Archive({self.pipeline!r})"

    def append_rows(self, table: pa.Table) -> ArchiveSegment | None:
        """Archive a batch of rows as one segment; ``None`` if it was already archived.

        ``table`` needs ``event_id``, ``timestamp``, the pipeline's feature columns and the
        source columns ``topic``/``partition``/``offset`` (nulls allowed where there is no
        source). Append many rows at once: each call writes one file.
        """
        _require(table, ("event_id", "timestamp", *self._features, *SOURCE_COLUMNS), "rows")
        return self._append(_ROWS, table)

    def append_labels(self, table: pa.Table) -> ArchiveSegment | None:
        """Archive delayed labels (``event_id``, ``label``, ``timestamp``) as one segment."""
        _require(table, ("event_id", "label", "timestamp"), "labels")
        return self._append(_LABELS, table)

    def read_rows(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        last_n: int | None = None,
        first_n: int | None = None,
    ) -> pa.Table:
        """Archived rows with ``since <= timestamp < until``, one per ``event_id``, by time.

        A re-delivered event keeps its first archived copy. ``last_n`` keeps only the newest
        ``n`` rows (reading only the newest segments it needs), ``first_n`` only the oldest.
        """
        return self._read_rows(since, until, last_n, drop_conflicts=False, first_n=first_n).table

    def read_rows_checked(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        last_n: int | None = None,
        first_n: int | None = None,
    ) -> CheckedRows:
        """As :meth:`read_rows`, less every event archived with conflicting copies (the same
        ``event_id`` with another timestamp or other feature values), whose ids it returns.

        Conflicts are found among the segments read (those overlapping ``[since, until)``,
        and for ``last_n`` the newest ones covering it).

        >>> import tempfile, datetime as dt, pyarrow as pa
        >>> from driftline.lifecycle_store import LifecycleStore
        >>> d = tempfile.mkdtemp()
        >>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/artifacts")
        >>> _ = store.ensure_pipeline("demo", ["x"])
        >>> t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        >>> def rows(xs):
        ...     return pa.table({"event_id": ["a", "b"], "timestamp": [t0, t0], "x": xs,
        ...                      "topic": [None, None], "partition": [None, None],
        ...                      "offset": [None, None]})
        >>> archive = store.archive("demo")
        >>> _ = archive.append_rows(rows([1.0, 2.0]))
        >>> _ = archive.append_rows(rows([1.0, 5.0]))  # "b" again, with another value
        >>> checked = archive.read_rows_checked()
        >>> checked.table.column("event_id").to_pylist(), checked.conflicting_ids
        (['a'], ['b'])
        >>> store.close()
        """
        return self._read_rows(since, until, last_n, drop_conflicts=True, first_n=first_n)

    def _read_rows(
        self,
        since: datetime | None,
        until: datetime | None,
        last_n: int | None,
        *,
        drop_conflicts: bool,
        first_n: int | None = None,
    ) -> CheckedRows:
        for name, n in (("last_n", last_n), ("first_n", first_n)):
            if n is not None and n < 0:
                raise StoreError(f"{name} must be >= 0, got {n}")
        if last_n is not None and first_n is not None:
            raise StoreError("pass last_n or first_n, not both")
        segments = self._segments(_ROWS, since, until)
        wanted = last_n if first_n is None else first_n
        if wanted is None:
            return self._rows_of(segments, since, until, drop_conflicts)
        covering = _newest_covering if first_n is None else _oldest_covering
        want = wanted
        while True:
            picked = covering(segments, want)
            read = self._rows_of(picked, since, until, drop_conflicts)
            if len(read.table) >= wanted or len(picked) == len(segments):
                break
            # Duplicates or rows outside [since, until) made us short: reach further.
            want += wanted - len(read.table)
        if first_n is not None:
            return CheckedRows(read.table.slice(0, first_n), read.conflicting_ids)
        return CheckedRows(read.table.slice(max(0, len(read.table) - wanted)), read.conflicting_ids)

    def _rows_of(
        self,
        segments: list[orm.ArchiveSegmentRow],
        since: datetime | None,
        until: datetime | None,
        drop_conflicts: bool,
    ) -> CheckedRows:
        table = self._read(segments)
        if table is None:
            return CheckedRows(self._empty_rows(), [])
        conflicting: list[str] = []
        if drop_conflicts:
            conflicting = _conflicting_ids(table, ("timestamp", *self._features))
            if conflicting:
                keep = pc.invert(pc.is_in(table.column("event_id"), pa.array(conflicting)))
                table = table.filter(keep)
        table = _first_per_event(_between(table, since, until))
        table = table.sort_by([("timestamp", "ascending"), ("event_id", "ascending")])
        return CheckedRows(table, conflicting)

    def read_labels(self, event_ids: Any = None) -> pa.Table:
        """The latest label of each event (optionally only of ``event_ids``).

        Segments of another label kind than the first (written before kinds were pinned) are
        converted where they can be, the rest skipped and counted (`concat_labels`)."""
        table = self._read_labels_stamped()
        if table is None:
            return pa.table(
                {"event_id": pa.array([], pa.string()), "label": pa.array([], pa.float64())}
            ).append_column("timestamp", pa.array([], pa.timestamp("us", tz="UTC")))
        if event_ids is not None:
            wanted = pa.array(list(event_ids) if not isinstance(event_ids, pa.Array) else event_ids)
            table = table.filter(pc.is_in(table.column("event_id"), value_set=wanted))
        n = len(table)
        table = table.append_column("__order", pa.array(np.arange(n)))
        # Latest by timestamp, a label stamped after it was archived counting as of its
        # archiving (on main one label stamped 9998 outranked every later correction); among
        # equal times the later-archived one wins.
        stamp, archived = table.column("timestamp"), table.column("__archived")
        earlier = pc.if_else(pc.less(stamp, archived), stamp, archived)
        table = table.append_column("__stamp", earlier)
        table = table.sort_by([("__stamp", "descending"), ("__order", "descending")])
        table = _first_per_event(table).sort_by([("event_id", "ascending")])
        return table.drop_columns(["__order", "__stamp", "__archived"])

    def _read_labels_stamped(self) -> pa.Table | None:
        """Every label segment in arrival order, each row with its segment's archiving time
        (``__archived``)."""
        segments = sorted(self._segments(_LABELS, None, None), key=lambda s: s.id)
        if not segments:
            return None
        kind = pa.timestamp("us", tz="UTC")
        tables = []
        for s in segments:
            table = self._store.artifacts.get_table(s.artifact_key)
            at = orm.as_utc(s.created_at)
            tables.append(table.append_column("__archived", pa.array([at] * len(table), kind)))
        return _concat_labels(tables)

    def row_count(self) -> int:
        """Rows archived, counting a re-delivered event as often as it was archived."""
        return self._count(_ROWS)

    def _count(self, kind: str) -> int:
        with self._store._read() as session:
            total = session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(orm.ArchiveSegmentRow.row_count), 0)).where(
                    orm.ArchiveSegmentRow.pipeline_id == self._pid,
                    orm.ArchiveSegmentRow.kind == kind,
                )
            )
        return int(total or 0)

    def label_count(self) -> int:
        """Labels archived, counting a re-sent label as often as it was archived."""
        return self._count(_LABELS)

    def segments(self, kind: str = _ROWS) -> list[ArchiveSegment]:
        """The segments of ``kind`` (``rows`` or ``labels``), oldest event time first."""
        if kind not in (_ROWS, _LABELS):
            raise StoreError(f"kind must be 'rows' or 'labels', got {kind!r}")
        return [self._segment_record(r) for r in self._segments(kind, None, None)]

    def _append(self, kind: str, table: pa.Table) -> ArchiveSegment | None:
        if len(table) == 0:
            return None
        table = table.replace_schema_metadata(None)
        ranges, with_source = _offset_ranges(table)
        key = _segment_key(table, ranges, with_source)
        with self._store._read() as session:
            known = session.scalar(
                sa.select(orm.ArchiveSegmentRow.id).where(
                    orm.ArchiveSegmentRow.pipeline_id == self._pid,
                    orm.ArchiveSegmentRow.kind == kind,
                    orm.ArchiveSegmentRow.segment_key == key,
                )
            )
        if known is not None:
            return None
        artifact_key = content_key(f"archive/{self._pid}/{kind}", key, ".parquet")
        options = _SEGMENT_OPTIONS if kind == _ROWS else {"compression": "lz4"}
        self._store.artifacts.put_table(artifact_key, table, **options)
        low, high = _bounds(table.column("timestamp"))
        row = orm.ArchiveSegmentRow(
            pipeline_id=self._pid,
            kind=kind,
            segment_key=key,
            artifact_key=artifact_key,
            row_count=len(table),
            min_time=low,
            max_time=high,
            offsets=ranges,
            created_at=orm.utcnow(),
        )
        try:
            with self._store._write() as session:
                session.add(row)
        except IntegrityError:
            return None  # a concurrent writer archived the same segment
        return self._segment_record(row)

    def _segments(
        self, kind: str, since: datetime | None, until: datetime | None
    ) -> list[orm.ArchiveSegmentRow]:
        seg = orm.ArchiveSegmentRow
        query = sa.select(seg).where(seg.pipeline_id == self._pid, seg.kind == kind)
        if since is not None:
            query = query.where(sa.or_(seg.max_time.is_(None), seg.max_time >= orm.as_utc(since)))
        if until is not None:
            query = query.where(sa.or_(seg.min_time.is_(None), seg.min_time < orm.as_utc(until)))
        with self._store._read() as session:
            return list(session.scalars(query.order_by(seg.min_time, seg.id)).all())

    def _read(self, segments: list[orm.ArchiveSegmentRow], combine: Any = None) -> pa.Table | None:
        if not segments:
            return None
        # In arrival order (segment ids grow with each write), so that of an event archived
        # twice the first copy written wins, whatever event time a later copy claims.
        by_arrival = sorted(segments, key=lambda s: s.id)
        tables = [self._store.artifacts.get_table(s.artifact_key) for s in by_arrival]
        if combine is not None:
            return combine(tables)
        return pa.concat_tables(tables, promote_options="permissive")

    def first_label_segment(self) -> pa.Table | None:
        """The first label segment archived (it pins the pipeline's label kind), or None."""
        segments = self._segments(_LABELS, None, None)
        if not segments:
            return None
        first = min(segments, key=lambda s: s.id)
        return self._store.artifacts.get_table(first.artifact_key)

    def _segment_record(self, row: orm.ArchiveSegmentRow) -> ArchiveSegment:
        return ArchiveSegment(
            row.id,
            row.kind,
            row.segment_key,
            self._store.artifacts.uri(row.artifact_key),
            row.row_count,
            row.min_time,
            row.max_time,
            row.offsets,
        )

    def _empty_rows(self) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "event_id": pa.array([], pa.string()),
            "timestamp": pa.array([], pa.timestamp("us", tz="UTC")),
        }
        columns.update({f: pa.array([], pa.float64()) for f in self._features})
        columns.update(
            topic=pa.array([], pa.string()),
            partition=pa.array([], pa.int32()),
            offset=pa.array([], pa.int64()),
        )
        return pa.table(columns)


def _require(table: pa.Table, columns: tuple[str, ...], what: str) -> None:
    if not isinstance(table, pa.Table):
        raise StoreError(f"{what} must be a pyarrow.Table, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SchemaMismatchError(
            f"{what} table lacks columns {missing} (it has {table.column_names}); "
            f"{what} need {list(columns)}"
        )
    if not pa.types.is_timestamp(table.column("timestamp").type):
        raise SchemaMismatchError(
            f"{what} column 'timestamp' has type {table.column('timestamp').type}; "
            "use pa.timestamp('us', tz='UTC')"
        )


def _offset_ranges(table: pa.Table) -> tuple[dict[str, Any] | None, int]:
    """``{"topic/partition": [first, last]}`` of the rows with a source, and their number."""
    if not all(c in table.column_names for c in SOURCE_COLUMNS):
        return None, 0
    sources = table.select(list(SOURCE_COLUMNS)).drop_null()
    if len(sources) == 0:
        return None, 0
    grouped = sources.group_by(["topic", "partition"]).aggregate(
        [("offset", "min"), ("offset", "max")]
    )
    ranges = sorted(
        (str(g["topic"]), int(g["partition"]), int(g["offset_min"]), int(g["offset_max"]))
        for g in grouped.to_pylist()
    )
    return {f"{t}/{p}": [lo, hi] for t, p, lo, hi in ranges}, len(sources)


def _segment_key(table: pa.Table, ranges: dict[str, Any] | None, with_source: int) -> str:
    if ranges is not None and with_source == len(table):
        basis = json.dumps(ranges, sort_keys=True).encode()
        return hashlib.sha256(b"offsets\0" + basis).hexdigest()
    return content_hash(table)


def _bounds(column: pa.ChunkedArray) -> tuple[datetime | None, datetime | None]:
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return (
        orm.as_utc(low) if low is not None else None,
        orm.as_utc(high) if high is not None else None,
    )


def _between(table: pa.Table, since: datetime | None, until: datetime | None) -> pa.Table:
    ts = table.column("timestamp")
    mask = None
    if since is not None:
        mask = pc.greater_equal(ts, pa.scalar(orm.as_utc(since), ts.type))
    if until is not None:
        upper = pc.less(ts, pa.scalar(orm.as_utc(until), ts.type))
        mask = upper if mask is None else pc.and_(mask, upper)
    return table if mask is None else table.filter(mask)


def _concat_labels(tables: list[pa.Table]) -> pa.Table:
    return concat_labels(tables)[0]


def _first_per_event(table: pa.Table) -> pa.Table:
    if len(table) == 0:
        return table
    index = pa.array(np.arange(len(table)))
    firsts = (
        pa.table({"event_id": table.column("event_id"), "__i": index})
        .group_by("event_id", use_threads=False)
        .aggregate([("__i", "min")])
        .column("__i_min")
    )
    if len(firsts) == len(table):
        return table
    return table.take(pa.array(np.sort(firsts.to_numpy())))


def _conflicting_ids(table: pa.Table, columns: tuple[str, ...]) -> list[str]:
    """Ids of events with copies that differ in any of ``columns`` (nulls count as values)."""
    ids = table.column("event_id")
    counts = pa.table({"event_id": ids}).group_by("event_id").aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1)).column("event_id")
    if len(repeated) == 0:
        return []
    copies = table.filter(pc.is_in(ids, value_set=repeated)).select(["event_id", *columns])
    every = pc.CountOptions(mode="all")
    distinct = copies.group_by("event_id", use_threads=False).aggregate(
        [(c, "count_distinct", every) for c in columns]
    )
    differs = None
    for c in columns:
        more = pc.greater(distinct.column(f"{c}_count_distinct"), 1)
        differs = more if differs is None else pc.or_(differs, more)
    return sorted(str(i) for i in distinct.filter(differs).column("event_id").to_pylist())


def _newest_covering(segments: list[orm.ArchiveSegmentRow], n: int) -> list[orm.ArchiveSegmentRow]:
    # The newest n rows lie in the segments reached, newest max_time first, until n rows are
    # covered and every segment left ends before the oldest of them starts. Duplicates can
    # only make the count short, so keep going past n by the rows not yet de-duplicated.
    if n == 0:
        return []
    ordered = sorted(segments, key=lambda s: (s.max_time is None, s.max_time), reverse=True)
    picked: list[orm.ArchiveSegmentRow] = []
    rows = 0
    oldest_start: datetime | None = None
    for seg in ordered:
        ends_before = (
            oldest_start is not None and seg.max_time is not None and seg.max_time < oldest_start
        )
        if rows >= n and ends_before:
            break
        picked.append(seg)
        rows += seg.row_count
        if seg.min_time is not None and (oldest_start is None or seg.min_time < oldest_start):
            oldest_start = seg.min_time
    return picked


def _oldest_covering(segments: list[orm.ArchiveSegmentRow], n: int) -> list[orm.ArchiveSegmentRow]:
    # The mirror of _newest_covering: oldest min_time first, until n rows are covered and
    # every segment left starts after the newest of them ends.
    if n == 0:
        return []
    ordered = sorted(segments, key=lambda s: (s.min_time is None, s.min_time))
    picked: list[orm.ArchiveSegmentRow] = []
    rows = 0
    newest_end: datetime | None = None
    for seg in ordered:
        starts_after = (
            newest_end is not None and seg.min_time is not None and seg.min_time > newest_end
        )
        if rows >= n and starts_after:
            break
        picked.append(seg)
        rows += seg.row_count
        if seg.max_time is not None and (newest_end is None or seg.max_time > newest_end):
            newest_end = seg.max_time
    return picked
