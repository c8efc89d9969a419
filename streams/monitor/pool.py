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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from driftline.detectors import DriftDetector, PartialState, PooledDetector
from driftline.detectors._serialization import pack, unpack
from driftline.detectors.result import DriftResult
from driftline.streams.monitor.alarms import AlarmWindow
from driftline.streams.monitor.summaries import Summary

__all__ = ["Alarm", "PipelinePool"]


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

    @property
    def rows_seen(self) -> int:
        """Rows of every partition folded into the chart (repeats skipped)."""
        return self.pooled.rows_seen

    @property
    def detector(self) -> DriftDetector:
        return self.pooled.detector

    def merge(self, summary: Summary) -> list[Alarm]:
        """Fold the rows of ``summary`` not folded yet; return the alarms to publish."""
        return self.merge_many([summary])

    def merge_many(self, summaries: Sequence[Summary]) -> list[Alarm]:
        """Fold the new rows of ``summaries`` (of one fetch) in event-time order.

        Summaries of a fetch come partition by partition; folding them one after the other
        would put a partition's newest rows before the older rows of the next one. Sorting the
        fetch's rows by timestamp (stable: arrival order among equal times) interleaves them
        as they happened. Every summary must fit the chart (`DriftDetector.check_partial`).
        """
        chunks = []
        for s in summaries:
            p = s.partition
            skip = max(0, self.next_row.get(p, 0) - s.first_row)
            if skip >= len(s):
                continue
            self.next_row[p] = s.first_row + len(s)
            n = len(s) - skip
            chunks.append(
                (
                    s.features[skip:],
                    s.rows[skip:],
                    s.offsets[skip:],
                    s.stamps_us[skip:],
                    np.full(n, p, dtype=np.int64),
                    np.arange(s.first_row + skip, s.first_row + len(s), dtype=np.int64),
                )
            )
        if not chunks:
            return []
        features, rows, offsets, stamps, parts, numbers = (
            np.concatenate(c) for c in zip(*chunks, strict=True)
        )
        if len(chunks) > 1:
            order = np.argsort(stamps, kind="stable")
            features, rows, offsets, stamps, parts, numbers = (
                a[order] for a in (features, rows, offsets, stamps, parts, numbers)
            )
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
        }
        pooled = np.frombuffer(self.pooled.to_bytes(), dtype=np.uint8)
        return pack(header, {"pooled": pooled})

    @classmethod
    def from_bytes(cls, data: bytes) -> PipelinePool:
        """Inverse of `to_bytes` (the state of this process's own checkpoint table)."""
        header, arrays = unpack(data)
        if header.get("kind") != "PipelinePool" or set(arrays) != {"pooled"}:
            raise ValueError("bytes do not hold a PipelinePool; pass to_bytes() output")
        pool = cls.__new__(cls)
        pool.reference = str(header["reference"])
        pool.pooled = PooledDetector.from_bytes(arrays["pooled"].tobytes())
        pool.window = AlarmWindow.from_json(header["window"])
        pool.next_row = {int(p): int(n) for p, n in header["next_row"]}
        pool.held = 0
        pool.last = None
        return pool


def _restarted(window: AlarmWindow) -> AlarmWindow:
    """A new window after a reset, keeping the recent rows (for the change-point search)."""
    return AlarmWindow(recent=list(window.recent))
