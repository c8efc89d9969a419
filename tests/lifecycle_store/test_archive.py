from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from driftline.lifecycle_store import LifecycleStore, NotFoundError, SchemaMismatchError
from driftline.lifecycle_store.exceptions import StoreError

Rows = Callable[..., pa.Table]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _with_source(table: pa.Table, partition: int = 0, first_offset: int = 0) -> pa.Table:
    n = len(table)
    return (
        table.append_column("topic", pa.array(["demo.inputs"] * n))
        .append_column("partition", pa.array([partition] * n, pa.int32()))
        .append_column("offset", pa.array(range(first_offset, first_offset + n), pa.int64()))
    )


def test_append_read_and_redelivery(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    archive = store.archive(pipeline)
    a = _with_source(rows(100))
    b = _with_source(rows(100, seed=1, start=100), first_offset=100)
    seg = archive.append_rows(a)
    assert seg is not None and seg.row_count == 100 and seg.offsets == {"demo.inputs/0": [0, 99]}
    assert seg.min_time == T0 and seg.max_time == T0 + timedelta(seconds=99)
    assert archive.append_rows(a) is None  # re-delivered batch: nothing written
    archive.append_rows(b)
    # A re-delivery cut differently overlaps both segments; reads drop the duplicates.
    archive.append_rows(pa.concat_tables([a.slice(50), b.slice(0, 10)]))
    assert archive.row_count() == 260 and len(archive.segments()) == 3
    everything = archive.read_rows()
    assert everything.column("event_id").to_pylist() == [f"e{i}" for i in range(200)]
    assert everything.column("f0").to_pylist() == (
        a.column("f0").to_pylist() + b.column("f0").to_pylist()
    )
    window = archive.read_rows(since=T0 + timedelta(seconds=90), until=T0 + timedelta(seconds=110))
    assert window.column("event_id").to_pylist() == [f"e{i}" for i in range(90, 110)]
    last = archive.read_rows(last_n=15)
    assert last.column("event_id").to_pylist() == [f"e{i}" for i in range(185, 200)]
    assert archive.read_rows(last_n=0).num_rows == 0
    assert archive.read_rows(since=T0 + timedelta(days=1)).num_rows == 0


def test_last_n_reaches_past_duplicates(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    archive = store.archive(pipeline)
    base = rows(40)
    archive.append_rows(_with_source(base))
    # Newest segment holds only re-delivered copies of the newest rows.
    archive.append_rows(_with_source(base.slice(30), partition=1))
    got = archive.read_rows(last_n=20)
    assert got.column("event_id").to_pylist() == [f"e{i}" for i in range(20, 40)]


def test_first_n_reads_the_oldest_rows_from_the_oldest_segments(
    store: LifecycleStore, pipeline: str, rows: Rows
) -> None:
    archive = store.archive(pipeline)
    for k in range(5):  # five segments of 20 rows, the newest first
        start = 20 * (4 - k)
        archive.append_rows(_with_source(rows(20, seed=k, start=start), first_offset=start))
    # A re-delivered copy of the oldest rows, archived last: counted once.
    archive.append_rows(_with_source(rows(20, seed=4, start=0).slice(0, 10), partition=1))
    got = archive.read_rows(first_n=25)
    assert got.column("event_id").to_pylist() == [f"e{i}" for i in range(25)]
    since = archive.read_rows_checked(since=T0 + timedelta(seconds=30), first_n=5)
    assert since.table.column("event_id").to_pylist() == [f"e{i}" for i in range(30, 35)]
    assert archive.read_rows(first_n=500).num_rows == 100
    assert archive.read_rows(first_n=0).num_rows == 0
    with pytest.raises(StoreError, match="not both"):
        archive.read_rows(first_n=1, last_n=1)
    with pytest.raises(StoreError, match="first_n must be >= 0"):
        archive.read_rows(first_n=-1)


def test_a_later_copy_claiming_an_earlier_time_does_not_replace_the_first(
    store: LifecycleStore, pipeline: str, rows: Rows
) -> None:
    """Dedup keeps the first archived copy by arrival, not the one with the oldest time."""
    archive = store.archive(pipeline)
    first = rows(10, start=100)
    archive.append_rows(_with_source(first))
    # A replayed or forged copy of the same ids, different values, an hour *earlier*.
    forged = rows(10, seed=7, start=100)
    earlier = pa.array(
        [t - timedelta(hours=1) for t in forged.column("timestamp").to_pylist()],
        pa.timestamp("us", tz="UTC"),
    )
    forged = forged.set_column(forged.schema.get_field_index("timestamp"), "timestamp", earlier)
    archive.append_rows(_with_source(forged, partition=1))
    got = archive.read_rows()
    assert got.column("event_id").to_pylist() == first.column("event_id").to_pylist()
    assert got.column("f0").to_pylist() == first.column("f0").to_pylist()


def test_conflicting_copies_are_found_and_left_out_by_the_checked_read(
    store: LifecycleStore, pipeline: str, rows: Rows
) -> None:
    """Re-delivered copies are no conflict; other features or another time under one id is."""
    archive = store.archive(pipeline)
    first = rows(20)
    archive.append_rows(_with_source(first))
    archive.append_rows(_with_source(first.slice(5, 10), partition=1))  # re-delivered as is
    other_values = rows(2, seed=9, start=10)  # e10, e11 with other features, same times
    archive.append_rows(_with_source(other_values, partition=2))
    later = first.slice(15, 1)  # e15, same features, a minute later
    moved = pa.array([T0 + timedelta(seconds=15, minutes=1)], pa.timestamp("us", tz="UTC"))
    later = later.set_column(later.schema.get_field_index("timestamp"), "timestamp", moved)
    archive.append_rows(_with_source(later, partition=3))

    checked = archive.read_rows_checked()
    assert checked.conflicting_ids == ["e10", "e11", "e15"]
    kept = [f"e{i}" for i in range(20) if i not in (10, 11, 15)]
    assert checked.table.column("event_id").to_pylist() == kept
    # The unchecked read keeps the first copy of every event, as before.
    assert archive.read_rows().column("event_id").to_pylist() == [f"e{i}" for i in range(20)]
    newest = archive.read_rows_checked(last_n=6)
    assert newest.table.column("event_id").to_pylist() == ["e13", "e14", "e16", "e17", "e18", "e19"]


def test_rows_without_source_use_content_key(
    store: LifecycleStore, pipeline: str, rows: Rows
) -> None:
    archive = store.archive(pipeline)
    t = rows(10)
    n = len(t)
    t = (
        t.append_column("topic", pa.nulls(n, pa.string()))
        .append_column("partition", pa.nulls(n, pa.int32()))
        .append_column("offset", pa.nulls(n, pa.int64()))
    )
    assert archive.append_rows(t) is not None and archive.append_rows(t) is None
    assert (
        archive.append_rows(
            rows(10, seed=5)
            .append_column("topic", pa.nulls(n, pa.string()))
            .append_column("partition", pa.nulls(n, pa.int32()))
            .append_column("offset", pa.nulls(n, pa.int64()))
        )
        is not None
    )
    assert archive.row_count() == 20


def test_labels_latest_wins(store: LifecycleStore, pipeline: str) -> None:
    archive = store.archive(pipeline)
    ts = pa.timestamp("us", tz="UTC")
    archive.append_labels(
        pa.table(
            {
                "event_id": ["e1", "e2"],
                "label": [0, 1],
                "timestamp": pa.array([T0, T0], ts),
            }
        )
    )
    archive.append_labels(
        pa.table(
            {
                "event_id": ["e1", "e3"],
                "label": [1, 0],
                "timestamp": pa.array([T0 + timedelta(seconds=5), T0], ts),
            }
        )
    )
    labels = archive.read_labels()
    assert labels.column("event_id").to_pylist() == ["e1", "e2", "e3"]
    assert labels.column("label").to_pylist() == [1, 1, 0]
    assert archive.read_labels(["e3", "zz"]).column("label").to_pylist() == [0]


def test_bad_input(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    archive = store.archive(pipeline)
    with pytest.raises(SchemaMismatchError, match="offset"):
        archive.append_rows(rows(5))
    with pytest.raises(SchemaMismatchError, match="timestamp"):
        archive.append_labels(pa.table({"event_id": ["a"], "label": [1], "timestamp": ["x"]}))
    with pytest.raises(NotFoundError, match="'ghost'"):
        store.archive("ghost")
    assert archive.row_count() == 0 and archive.read_rows().num_rows == 0
    assert archive.read_labels().num_rows == 0
