"""PooledDetector: one pipeline-level chart over the rows of every partition."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from driftline.detectors._serialization import pack, unpack
from driftline.detectors._validation import check_positive_int
from driftline.detectors.base import DriftDetector
from driftline.detectors.exceptions import InvalidInputError
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
        self.resets: list[tuple[int, bool, DriftResult]] = []

    @property
    def rows_by_partition(self) -> dict[int, int]:
        """Rows merged from each partition."""
        return dict(self._rows_by_partition)

    def update(self, partition: int, batch: np.ndarray) -> DriftResult:
        """Summarize and merge ``batch`` of ``partition`` here (single-process use)."""
        return self.merge(partition, self.detector.partial_state(batch))

    def merge(self, partition: int | np.ndarray, partial: PartialState) -> DriftResult:
        """Fold one partition's summary into the pipeline chart (in arrival order).

        ``partition`` may also be an array naming each row's partition (a summary whose
        rows were merged from several partitions, e.g. in event-time order).

        After an alarm the chart is reset and the summary's rows after the alarm row are fed
        to it again. Returns the first alarm let through (``index`` within ``partial``), else
        a result without drift; ``resets`` lists every reset of this call as
        ``(index, emitted, result)``.
        """
        self.detector.check_partial(partial)  # before any counter moves
        start, n = self.rows_seen, len(partial)
        self.rows_seen += n
        if isinstance(partition, np.ndarray):  # rows of several partitions, one each
            for p, count in zip(*np.unique(partition, return_counts=True), strict=True):
                self._rows_by_partition[int(p)] = self._rows_by_partition.get(int(p), 0) + int(
                    count
                )
        else:
            self._rows_by_partition[partition] = self._rows_by_partition.get(partition, 0) + n
        self.resets = []
        first: DriftResult | None = None
        pos = 0
        while True:
            part = partial if pos == 0 else PartialState(partial.features[pos:], partial.rows[pos:])
            result = self.detector.merge(part)
            if not result.drift:
                break
            assert result.index is not None
            at = pos + result.index
            self.detector.reset()
            emitted = start + at >= self._quiet_until
            if emitted:
                self.alarms += 1
                self._quiet_until = start + at + self.holdoff
                result = replace(result, index=at)
                first = first or result
            else:
                self.alarms_held += 1
            self.resets.append((at, emitted, result))
            pos = at + 1
            if pos >= n:
                break
        if first is not None:
            return first
        return DriftResult(
            drift=False,
            index=None,
            statistic=result.statistic,
            threshold=result.threshold,
            features=result.features,
        )

    def new_episode(self) -> None:
        """Let the next alarm through at once (a new reference episode begins)."""
        self._quiet_until = self.rows_seen

    def to_bytes(self) -> bytes:
        """Pickle-free bytes of the chart and its counters (see ``from_bytes``).

        >>> import numpy as np
        >>> from driftline.detectors import OnlineMMD
        >>> det = OnlineMMD(ert=1000, window=50, n_simulated=20_000)
        >>> pooled = PooledDetector(det.fit(np.random.default_rng(0).normal(size=(500, 2))))
        >>> _ = pooled.update(2, np.zeros((7, 2)))
        >>> PooledDetector.from_bytes(pooled.to_bytes()).rows_by_partition
        {2: 7}
        """
        header = {
            "kind": "PooledDetector",
            "holdoff": self.holdoff,
            "rows_seen": self.rows_seen,
            "alarms": self.alarms,
            "alarms_held": self.alarms_held,
            "quiet_until": self._quiet_until,
            "rows_by_partition": sorted(self._rows_by_partition.items()),
        }
        detector = np.frombuffer(self.detector.to_bytes(), dtype=np.uint8)
        return pack(header, {"detector": detector})

    @classmethod
    def from_bytes(cls, data: bytes) -> PooledDetector:
        """Inverse of ``to_bytes``; rejects anything else."""
        header, arrays = unpack(data)
        if header.get("kind") != "PooledDetector" or set(arrays) != {"detector"}:
            raise InvalidInputError("bytes do not hold a PooledDetector; pass to_bytes() output")
        pooled = cls(DriftDetector.from_bytes(arrays["detector"].tobytes()), int(header["holdoff"]))
        pooled.rows_seen = int(header["rows_seen"])
        pooled.alarms = int(header["alarms"])
        pooled.alarms_held = int(header["alarms_held"])
        pooled._quiet_until = int(header["quiet_until"])
        pooled._rows_by_partition = {int(p): int(n) for p, n in header["rows_by_partition"]}
        return pooled
