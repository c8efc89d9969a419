"""PooledDetector: one pipeline-level chart over the rows of every partition."""

from __future__ import annotations

import numpy as np

from driftline.detectors._validation import check_positive_int
from driftline.detectors.base import DriftDetector
from driftline.detectors.result import DriftResult, PartialState

__all__ = ["PooledDetector"]


class PooledDetector:
    """Combine per-partition summaries into one statistic at the pipeline's false-alarm rate.

    One detector per partition, each at the user's ``ert``, raises ``P`` times the false
    alarms, and a change that hits every partition must build up in each partition's own
    (P times thinner) share of the rows. Here each partition's worker only computes
    ``detector.partial_state(batch)`` (validation and the feature map, the costly part) and
    the one owner of the pipeline statistic merges the summaries in arrival order into a
    single chart: its run length without drift is ``ert`` rows of the *pipeline*, and its
    delay in total rows is that of one detector on the interleaved stream, whatever ``P``.

    After an alarm the chart is reset and further alarms are held back for ``holdoff`` rows
    (default ``ert``): a persisting change gives one alarm (one DriftEvent), not one per
    window. ``alarms_held`` counts those held back.

    Example:
        >>> import numpy as np
        >>> from driftline.detectors import OnlineMMD
        >>> rng = np.random.default_rng(0)
        >>> det = OnlineMMD(ert=20_000, window=100, n_simulated=100_000)
        >>> det = det.fit(rng.normal(size=(2000, 3)))
        >>> pooled = PooledDetector(det)
        >>> fired = []
        >>> for step in range(30):  # 4 partitions, 50 rows each per step, change at step 15
        ...     for partition in range(4):
        ...         rows = rng.normal(size=(50, 3)) + (1.0 if step >= 15 else 0.0)
        ...         fired.append(pooled.merge(partition, det.partial_state(rows)).drift)
        >>> sum(fired), pooled.rows_seen
        (1, 6000)
    """

    def __init__(self, detector: DriftDetector, holdoff: int | None = None) -> None:
        self.detector = detector
        self.holdoff = int(detector.ert) if holdoff is None else holdoff
        check_positive_int("holdoff", self.holdoff, "rows without a second alarm")
        self.rows_seen = 0
        self.alarms = 0
        self.alarms_held = 0
        self._quiet_until = 0
        self._rows_by_partition: dict[int, int] = {}

    @property
    def rows_by_partition(self) -> dict[int, int]:
        """Rows merged from each partition."""
        return dict(self._rows_by_partition)

    def update(self, partition: int, batch: np.ndarray) -> DriftResult:
        """Summarize and merge ``batch`` of ``partition`` here (single-process use)."""
        return self.merge(partition, self.detector.partial_state(batch))

    def merge(self, partition: int, partial: PartialState) -> DriftResult:
        """Fold one partition's summary into the pipeline chart (in arrival order)."""
        start = self.rows_seen
        result = self.detector.merge(partial)
        self.rows_seen += len(partial)
        self._rows_by_partition[partition] = self._rows_by_partition.get(partition, 0) + len(
            partial
        )
        if not result.drift:
            return result
        assert result.index is not None
        alarm_row = start + result.index
        self.detector.reset()
        if alarm_row < self._quiet_until:
            self.alarms_held += 1
            return DriftResult(
                drift=False,
                index=None,
                statistic=result.statistic,
                threshold=result.threshold,
                features=result.features,
            )
        self.alarms += 1
        self._quiet_until = alarm_row + self.holdoff
        return result
