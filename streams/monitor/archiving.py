"""Archive segments of the monitor step, written in order — inline or on one writer thread.

A segment is the valid rows of a run of messages. Writing one (Parquet encoding and
compression, the file, the store's record) is the largest cost of a high-rate batch after the
detector, and pyarrow releases the GIL while it encodes, so a `SegmentWriter` with
``background=True`` writes segments on its own thread while the step goes on with the next
batches. The guarantee does not change: a message's offset may be committed only once its
rows are durably archived or its dead letter is out, so a segment's messages stay *held*
until its outcome is collected on the step's thread (see `MonitorStep.submit_archive`).

Segments are written one at a time in submission order (one thread), so the future of the
newest segment completing means every earlier one is done too.

>>> import tempfile, datetime as dt, numpy as np
>>> from driftline.lifecycle_store import LifecycleStore
>>> from driftline.streams.monitor.rows import Rows, strings
>>> d = tempfile.mkdtemp()
>>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
>>> _ = store.ensure_pipeline("demo", ["x"])
>>> rows = Rows(("x",), strings(["a", "b"]), np.zeros(2, np.int64), np.ones((2, 1)),
...             strings(["demo.inputs"] * 2), np.zeros(2, np.int32), np.arange(2))
>>> writer = SegmentWriter(store.archive("demo"), background=True)
>>> segment = writer.submit([rows], {})
>>> writer.wait()
>>> [s.outcome().failed for s in writer.completed()], store.archive("demo").row_count()
([()], 2)
>>> writer.close(); store.close()
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from driftline.lifecycle_store.archive import Archive
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.rows import Rows

__all__ = ["MAX_IN_FLIGHT", "MessageKey", "Segment", "SegmentOutcome", "SegmentWriter"]

MessageKey = tuple[str, int, int]
"""(topic, partition, offset) of a source message."""

MAX_IN_FLIGHT = 2
"""Segments submitted but not yet written before `SegmentWriter.submit` waits for the oldest:
bounds the memory of rows waiting for the archive when the store is slower than the input."""


@dataclass(frozen=True)
class SegmentOutcome:
    """What writing a segment gave: the messages whose rows could not be archived (they
    become ``poison`` dead letters) and the last error, when there was one."""

    failed: tuple[MessageKey, ...] = ()
    error: Exception | None = None


@dataclass
class Segment:
    """One submitted segment: its rows, the messages they came from, and its write."""

    parts: list[Rows]
    sources: dict[MessageKey, RawMessage]
    future: Future[SegmentOutcome] = field(default_factory=Future)

    def outcome(self) -> SegmentOutcome:
        """The outcome of a finished write; raises the store's error when nothing could be
        archived (the store, not a message, is failing)."""
        return self.future.result()

    def outcome_error(self) -> Exception:
        """The error of a write that archived nothing (call only when there was one)."""
        error = self.future.exception()
        assert isinstance(error, Exception)
        return error


def write_segment(archive: Archive, rows: Rows, attempts: int) -> SegmentOutcome:
    """Archive ``rows`` as one segment; if that fails, message by message (``attempts``
    tries each). Raises the error when no message can be archived."""
    try:
        archive.append_rows(rows.to_table())
        return SegmentOutcome()
    except Exception as exc:
        error = exc
    failed = []
    groups = message_keys(rows)
    for key, index in groups.items():
        part = rows.take(index)
        for _ in range(attempts):
            try:
                archive.append_rows(part.to_table())
                break
            except Exception as exc:
                error = exc
        else:
            failed.append(key)
    if len(failed) == len(groups):
        raise error
    return SegmentOutcome(tuple(failed), error)


def message_keys(rows: Rows) -> dict[MessageKey, np.ndarray]:
    """(topic, partition, offset) of each source message of ``rows`` -> its row positions."""
    order = np.lexsort((rows.offsets, rows.partitions))
    p, o = rows.partitions[order], rows.offsets[order]
    starts = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (o[1:] != o[:-1])])
    return {
        (rows.topics[int(g[0])].as_py(), int(p[i]), int(o[i])): g
        for i, g in zip(starts, np.split(order, starts[1:]), strict=True)
    }


class SegmentWriter:
    """Write segments to ``archive`` in submission order (see the module docstring).

    ``background=False`` writes each segment inside `submit` (its future is done on
    return); ``True`` on one writer thread, at most ``max_in_flight`` segments ahead.
    """

    def __init__(
        self,
        archive: Archive | Callable[[], Archive],
        *,
        background: bool = False,
        attempts: int = 3,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._archive = archive
        self.background = background
        self.attempts = attempts
        self.max_in_flight = max_in_flight
        self._segments: deque[Segment] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"SegmentWriter(background={self.background}, in_flight={self.in_flight})"

    @property
    def in_flight(self) -> int:
        """Segments submitted whose outcome was not taken by `completed` yet."""
        return len(self._segments)

    def submit(self, parts: list[Rows], sources: dict[MessageKey, RawMessage]) -> Segment:
        """Write ``parts`` (rows of the messages ``sources``) as one segment."""
        archive = self._archive if isinstance(self._archive, Archive) else self._archive()
        names = parts[0].feature_names
        segment = Segment(parts, sources)

        def write() -> SegmentOutcome:
            return write_segment(archive, Rows.concat(parts, names), self.attempts)

        if self.background:
            while self._running() >= self.max_in_flight:
                wait([s.future for s in self._segments], return_when="FIRST_COMPLETED")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="driftline-archive")
            segment.future = self._pool.submit(write)
        else:
            try:
                segment.future.set_result(write())
            except Exception as exc:
                segment.future.set_exception(exc)
        self._segments.append(segment)
        return segment

    def barrier(self) -> Future[SegmentOutcome]:
        """A future done once every segment submitted so far is written."""
        if self._segments:
            return self._segments[-1].future
        done: Future[SegmentOutcome] = Future()
        done.set_result(SegmentOutcome())
        return done

    def completed(self) -> list[Segment]:
        """The finished segments not taken yet, oldest first (stops at the first unfinished)."""
        done = []
        while self._segments and self._segments[0].future.done():
            done.append(self._segments.popleft())
        return done

    def wait(self) -> None:
        """Block until every submitted segment is written (or failed)."""
        wait([s.future for s in self._segments])

    def close(self) -> None:
        """Finish the writes under way and stop the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _running(self) -> int:
        return sum(1 for s in self._segments if not s.future.done())
