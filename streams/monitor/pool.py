"""PipelinePool: the one drift chart of a pipeline, fed by every partition's summaries.

The owner of ``{p}.detector-summaries`` (one partition, so one worker of the group) keeps a
`driftline.detectors.PooledDetector` and the `AlarmWindow` of its rows. Summaries are folded
in arrival order; each partition's rows are numbered by the step that summarized them
(`Summary.first_row`), so rows a summary repeats after a restart or a rebalance are skipped
and every row counts once. An alarm resets the chart and the rest of the summary is fed
again, as the per-partition path does with its chunks; re-alarms within the holdoff are
held back (one change, one DriftEvent).

>>> import numpy as np
>>> from driftline.detectors import OnlineMMD
>>> from driftline.streams.monitor.summaries import Summary
>>> rng = np.random.default_rng(0)
>>> det = OnlineMMD(ert=5000, window=50, n_simulated=50_000).fit(rng.normal(size=(1000, 2)))
>>> pool = PipelinePool(det.to_bytes(), reference="dv", holdoff=5000)
>>> def summary(p, first, x):
...     n = len(x)
...     return Summary("demo", "dv", p, first, det.partial_state(x).features, x,
...                    np.arange(first, first + n), np.arange(n))
>>> alarms = []
>>> for i in range(40):  # 4 partitions, 25 rows each, a shift from step 20 on
...     for p in range(4):
...         x = rng.normal(size=(25, 2)) + (1.5 if i >= 20 else 0.0)
...         alarms += pool.merge(summary(p, 25 * i, x))
>>> len(alarms), pool.rows_seen
(1, 4000)
>>> pool.merge(summary(0, 0, rng.normal(size=(25, 2))))  # a repeat: skipped
[]
>>> pool.rows_seen
4000
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from driftline.detectors import DriftDetector, PartialState, PooledDetector
from driftline.detectors._serialization import pack, unpack
from driftline.detectors.result import DriftResult
from driftline.streams.monitor.alarms import AlarmWindow
from driftline.streams.monitor.summaries import Summary

__all__ = ["MAX_BUFFERED_BYTES", "Alarm", "PipelinePool"]

log = logging.getLogger(__name__)

MAX_BUFFERED_BYTES = 16 * 1024 * 1024
"""Most bytes of rows the chart holds back waiting for a partition that lags (a partition
that moves in a rebalance sends nothing until its new owner has restored it: tens of thousands
of rows at a few features). The buffer is part of the chart's checkpoint, whose changelog
topic accepts records of this size and more (`driftline.streams.kafka.app.changelog_topics`)."""
_BUFFER = ("features", "rows", "offsets", "stamps", "partitions", "numbers")


@dataclass(frozen=True)
class Alarm:
    """An alarm to publish: the detector's result, where it fired (input partition, offset
    and the row's number in its partition) and the window it closes (alarm row included)."""

    result: DriftResult
    partition: int
    offset: int
    row: int
    window: AlarmWindow


class PipelinePool:
    """The pooled chart of one reference (see the module docstring)."""

    def __init__(self, template: bytes, *, reference: str, holdoff: int) -> None:
        self.reference = reference
        self.pooled = PooledDetector(DriftDetector.from_bytes(template), holdoff=max(1, holdoff))
        self.window = AlarmWindow()
        #: input partition -> the number of its rows folded in (the next row to take)
        self.next_row: dict[int, int] = {}
        #: alarms held back within the holdoff (they reset the chart all the same)
        self.held = 0
        #: the result of the last merge (the statistic a report plots)
        self.last: DriftResult | None = None
        #: input partition -> the newest timestamp (µs) it sent; rows wait for the oldest
        self.latest: dict[int, int] = {}
        self._buffer: list[tuple[np.ndarray, ...]] = []
        #: rows folded before every partition's rows of their time had come (buffer full)
        self.forced = 0

    @property
    def rows_seen(self) -> int:
        """Rows of every partition folded into the chart (repeats skipped)."""
        return self.pooled.rows_seen

    @property
    def buffered(self) -> int:
        """Rows received but not folded yet (waiting for the other partitions' rows)."""
        return sum(len(c[1]) for c in self._buffer)

    @property
    def detector(self) -> DriftDetector:
        return self.pooled.detector

    def merge(self, summary: Summary) -> list[Alarm]:
        """Fold the rows of ``summary`` not folded yet; return the alarms to publish."""
        return self.merge_many([summary])

    def merge_many(self, summaries: Sequence[Summary]) -> list[Alarm]:
        """Fold the new rows of ``summaries`` in event-time order across partitions.

        Partitions reach the owner in blocks (a fetch per partition, more when a worker lags):
        folding them as they come would put one partition's newest rows before older rows of
        the others and dilute a change. So rows wait in a buffer until every partition that
        sent rows has sent some at least as new (a watermark), and are folded sorted by
        timestamp (stable: arrival order among equal times). A partition that goes quiet
        holds rows back for at most `MAX_BUFFERED_BYTES`; beyond that the oldest are folded
        (counted in ``forced``, and logged).
        Every summary must fit the chart (`DriftDetector.check_partial`).
        """
        for s in summaries:
            p = s.partition
            skip = max(0, self.next_row.get(p, 0) - s.first_row)
            if skip >= len(s):
                continue
            self.next_row[p] = s.first_row + len(s)
            n = len(s) - skip
            newest = int(s.stamps_us[skip:].max())
            self.latest[p] = max(self.latest.get(p, newest), newest)
            self._buffer.append(
                (
                    s.features[skip:],
                    s.rows[skip:],
                    s.offsets[skip:],
                    s.stamps_us[skip:],
                    np.full(n, p, dtype=np.int64),
                    np.arange(s.first_row + skip, s.first_row + len(s), dtype=np.int64),
                )
            )
        if not self._buffer:
            return []
        arrays = [np.concatenate(c) for c in zip(*self._buffer, strict=True)]
        order = np.argsort(arrays[3], kind="stable")
        arrays = [a[order] for a in arrays]
        total = len(order)
        ready = int(np.searchsorted(arrays[3], min(self.latest.values()), side="right"))
        limit = max(1, MAX_BUFFERED_BYTES // _row_bytes(arrays))
        if total - limit > ready:
            slow = sorted(p for p, t in self.latest.items() if t < arrays[3][total - limit - 1])
            log.warning(
                "pipeline chart: %d rows folded before partitions %s caught up (buffer full)",
                total - limit - ready,
                slow,
            )
            self.forced += total - limit - ready
            ready = total - limit
        self._buffer = [tuple(a[ready:] for a in arrays)] if ready < total else []
        if ready == 0:
            return []
        features, rows, offsets, stamps, parts, numbers = (a[:ready] for a in arrays)
        self.last = self.pooled.merge(parts, PartialState(features, rows))
        alarms: list[Alarm] = []
        start = 0
        for at, emitted, result in self.pooled.resets:
            stop = at + 1
            self.window.extend(
                rows[start:stop], parts[start:stop], offsets[start:stop], stamps[start:stop]
            )
            if emitted:
                alarms.append(
                    Alarm(result, int(parts[at]), int(offsets[at]), int(numbers[at]), self.window)
                )
            else:
                self.held += 1
            self.window = _restarted(self.window)
            start = stop
        self.window.extend(rows[start:], parts[start:], offsets[start:], stamps[start:])
        return alarms

    def new_episode(self) -> None:
        """A new deployment with the same reference: its first alarm is heard at once."""
        self.pooled.new_episode()

    def to_bytes(self) -> bytes:
        """Checkpoint of the chart, its window and the rows folded per partition."""
        header = {
            "kind": "PipelinePool",
            "reference": self.reference,
            "window": self.window.to_json(),
            "next_row": sorted(self.next_row.items()),
            "latest": sorted(self.latest.items()),
        }
        arrays = {"pooled": np.frombuffer(self.pooled.to_bytes(), dtype=np.uint8)}
        if self._buffer:
            for name, a in zip(_BUFFER, self._buffer[0], strict=True):
                arrays[name] = a
        return pack(header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> PipelinePool:
        """Inverse of `to_bytes` (the state of this process's own checkpoint table)."""
        header, arrays = unpack(data)
        if header.get("kind") != "PipelinePool" or set(arrays) - set(_BUFFER) != {"pooled"}:
            raise ValueError("bytes do not hold a PipelinePool; pass to_bytes() output")
        pool = cls.__new__(cls)
        pool.reference = str(header["reference"])
        pool.pooled = PooledDetector.from_bytes(arrays["pooled"].tobytes())
        pool.window = AlarmWindow.from_json(header["window"])
        pool.next_row = {int(p): int(n) for p, n in header["next_row"]}
        pool.held = pool.forced = 0
        pool.last = None
        pool.latest = {int(p): int(t) for p, t in header.get("latest", [])}
        pool._buffer = [tuple(arrays[n] for n in _BUFFER)] if _BUFFER[0] in arrays else []
        return pool


def _row_bytes(arrays: list[np.ndarray]) -> int:
    """Bytes one buffered row takes (its feature map, features, offset, stamp, numbers)."""
    return max(1, sum(a.itemsize * (a.size // max(1, len(a))) for a in arrays))


def _restarted(window: AlarmWindow) -> AlarmWindow:
    """A new window after a reset, keeping the recent rows (for the change-point search)."""
    return AlarmWindow(recent=list(window.recent))
