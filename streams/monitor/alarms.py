"""The rows a drift chart monitored since its last reset, and the DriftEvent of its alarm.

One `AlarmWindow` per chart: the per-partition layout keeps one per input partition, the
pooled layout one for the whole pipeline (its rows come from every partition). Both build
their DriftEvents with `drift_event`, so an alarm carries the same fields either way: the
source ranges per partition, the window's time span, the estimated change point and the
feature attribution.

>>> import numpy as np
>>> w = AlarmWindow()
>>> w.extend(np.zeros((3, 2)), np.array([0, 1, 1]), np.array([7, 4, 5]), np.array([1, 2, 3]))
>>> w.rows, w.start_offsets, w.end_offsets, (w.min_us, w.max_us)
(3, {0: 7, 1: 4}, {0: 7, 1: 5}, (1, 3))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from driftline.detectors.changepoint import estimate_change_point
from driftline.schemas import ChangePoint, DriftEvent, FeatureScore, SourceRange

__all__ = ["CHANGE_WINDOW", "AlarmWindow", "drift_event", "from_us"]

# Rows kept for the change-point search: enough to reach back past a detection delay of
# hundreds of rows, small enough (2048 x d floats) to keep per chart.
CHANGE_WINDOW = 2048


@dataclass
class AlarmWindow:
    """Rows since a chart's last reset (offsets per partition, time span, count), how many
    rows ago its last alarm of this episode was emitted, and its most recent
    ``CHANGE_WINDOW`` rows (kept across resets) to estimate where a change began."""

    start_offsets: dict[int, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)
    min_us: int | None = None
    max_us: int | None = None
    rows: int = 0
    since_alarm: int | None = None
    recent: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list
    )

    def start(self) -> None:
        """A reset: a new window begins (the recent rows and ``since_alarm`` stay)."""
        self.start_offsets, self.end_offsets = {}, {}
        self.min_us = self.max_us = None
        self.rows = 0

    def extend(
        self, x: np.ndarray, partitions: np.ndarray, offsets: np.ndarray, stamps: np.ndarray
    ) -> None:
        """Rows ``x`` (of ``partitions`` at ``offsets``, timestamps ``stamps`` in µs) were
        folded into the chart, in this order."""
        n = len(x)
        if n == 0:
            return
        for p in np.unique(partitions).tolist():
            at = offsets[partitions == p]
            lo_at, hi_at = int(at.min()), int(at.max())
            self.start_offsets[int(p)] = min(self.start_offsets.get(int(p), lo_at), lo_at)
            self.end_offsets[int(p)] = max(self.end_offsets.get(int(p), hi_at), hi_at)
        lo, hi = int(stamps.min()), int(stamps.max())
        self.min_us = lo if self.min_us is None else min(self.min_us, lo)
        self.max_us = hi if self.max_us is None else max(self.max_us, hi)
        self.rows += n
        if self.since_alarm is not None:
            self.since_alarm += n
        self.recent.append((x, partitions, offsets, stamps))
        if sum(len(r[1]) for r in self.recent) > 2 * CHANGE_WINDOW:
            self.recent = [self._recent_arrays()]

    def _recent_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x, partitions, offsets, stamps = (
            np.concatenate(c)[-CHANGE_WINDOW:] for c in zip(*self.recent, strict=True)
        )
        return x, partitions, offsets, stamps

    def change_point(self) -> tuple[int, int, int, int, bool] | None:
        """``(partition, offset, timestamp_us, rows_before_alarm, confident)`` of the
        estimated first drifted row among the recent rows (the last one is the alarm's)."""
        if not self.recent:
            return None
        x, partitions, offsets, stamps = self._recent_arrays()
        est = estimate_change_point(x)
        i = est.index
        return (
            int(partitions[i]),
            int(offsets[i]),
            int(stamps[i]),
            len(x) - 1 - i,
            est.confident,
        )

    def to_json(self) -> list[Any]:
        """The window's fields for a checkpoint header (the recent rows are not kept)."""
        return [
            sorted(self.start_offsets.items()),
            sorted(self.end_offsets.items()),
            self.min_us,
            self.max_us,
            self.rows,
            self.since_alarm,
        ]

    @classmethod
    def from_json(cls, data: list[Any], partition: int = 0) -> AlarmWindow:
        """Inverse of `to_json` (also reads the single-partition form of older checkpoints:
        ``[start_offset, min_us, max_us, rows, since_alarm]`` of ``partition``)."""
        if len(data) == 5:
            start, lo, hi, rows, since = data
            starts = [] if start is None else [[partition, start]]
            return cls(
                start_offsets=dict(starts), min_us=lo, max_us=hi, rows=rows, since_alarm=since
            )
        starts, ends, lo, hi, rows, since = data
        return cls(
            start_offsets={int(p): int(o) for p, o in starts},
            end_offsets={int(p): int(o) for p, o in ends},
            min_us=lo,
            max_us=hi,
            rows=int(rows),
            since_alarm=since,
        )


def drift_event(
    *,
    pipeline: str,
    detector: str,
    reference_data_version: str | None,
    reference_deployment_id: str | None,
    topic: str,
    window: AlarmWindow,
    alarm: tuple[int, int, str],
    result: Any,
) -> DriftEvent:
    """The DriftEvent of ``result``'s alarm at ``alarm`` = (partition, offset, row key).

    ``window`` holds the rows monitored since the last reset up to and including the alarm
    row. The id hashes the alarm's reference, position and row key: a re-delivered batch
    re-raises the same alarm with the same id, and consumers dedupe by it.
    """
    partition, end_offset, row_key = alarm
    drift_id = (
        "drift-"
        + hashlib.sha256(
            f"{pipeline}\0{reference_deployment_id}\0{reference_data_version}\0"
            f"{topic}\0{partition}\0{end_offset}\0{row_key}".encode()
        ).hexdigest()[:24]
    )
    change = window.change_point()
    # Shares of the attribution (see FeatureScore): bounded whatever the detector's scale.
    raw = np.array([max(float(s), 0.0) for _, s in result.features], dtype=np.float64)
    raw = np.where(np.isfinite(raw), raw, 0.0)
    shares = raw / raw.sum() if raw.sum() > 0 else raw
    ends = dict(window.end_offsets)
    ends.setdefault(partition, end_offset)
    return DriftEvent(
        drift_id=drift_id,
        pipeline=pipeline,
        detector=detector,
        statistic=float(result.statistic),
        threshold=float(result.threshold),
        features=[
            FeatureScore(name=n, score=float(min(v, 1.0)))
            for (n, _), v in zip(result.features[:10], shares, strict=False)
        ],
        change_points=[]
        if change is None
        else [
            ChangePoint(
                topic=topic,
                partition=change[0],
                offset=change[1],
                timestamp=from_us(change[2]),
                rows_before_alarm=change[3],
                confident=change[4],
            )
        ],
        window_start=from_us(window.min_us),
        window_end=from_us(window.max_us),
        offsets=[
            SourceRange(
                topic=topic,
                partition=p,
                start_offset=window.start_offsets.get(p, end),
                end_offset=end,
            )
            for p, end in sorted(ends.items())
        ],
        rows_seen=window.rows,
        reference_data_version=reference_data_version,
        reference_deployment_id=reference_deployment_id,
    )


def from_us(us: int | None) -> datetime:
    """A UTC datetime of microseconds since the epoch (the epoch itself for None)."""
    return (
        datetime.fromtimestamp(0, tz=UTC)
        if us is None
        else datetime.fromtimestamp(us / 1e6, tz=UTC)
    )
