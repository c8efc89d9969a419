"""Pipeline-level pooling: delay in total rows does not grow with the number of partitions."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors import DriftDetector, InvalidInputError, OnlineMMD, PooledDetector

BATCH = 50  # rows per partition per poll
CHANGE = 6_000  # total rows before the change
AFTER = 12_000


def _stream(rng: np.random.Generator) -> np.ndarray:
    before = rng.normal(size=(CHANGE, 4))
    after = rng.normal(size=(AFTER, 4)) + np.array([0.5, 0.0, 0.0, 0.0])
    return np.concatenate([before, after])


def _polls(n_partitions: int, n_rows: int) -> list[tuple[int, int, int]]:
    """(partition, start, stop) in arrival order: partitions take turns, BATCH rows each."""
    return [
        ((i // BATCH) % n_partitions, i, min(i + BATCH, n_rows)) for i in range(0, n_rows, BATCH)
    ]


@pytest.fixture(scope="module")
def template() -> bytes:
    ref = np.random.default_rng(0).normal(size=(4000, 4))
    return OnlineMMD(ert=50_000, window=200, n_simulated=300_000).fit(ref).to_bytes()


def _pooled_run(template: bytes, n_partitions: int, seed: int) -> tuple[int | None, int]:
    stream = _stream(np.random.default_rng(seed))
    workers = [DriftDetector.from_bytes(template) for _ in range(n_partitions)]
    pooled = PooledDetector(DriftDetector.from_bytes(template))
    first = None
    for part, start, stop in _polls(n_partitions, len(stream)):
        # Each partition's worker summarizes its rows; one owner merges the summaries.
        res = pooled.merge(part, workers[part].partial_state(stream[start:stop]))
        if res.drift and first is None:
            assert res.index is not None
            first = start + res.index - CHANGE
    return first, pooled.alarms


def _per_partition_run(template: bytes, n_partitions: int, seed: int) -> int | None:
    stream = _stream(np.random.default_rng(seed))
    dets = [DriftDetector.from_bytes(template) for _ in range(n_partitions)]
    for part, start, stop in _polls(n_partitions, len(stream)):
        res = dets[part].update(stream[start:stop])
        if res.drift and start + (res.index or 0) >= CHANGE:
            return start + (res.index or 0) - CHANGE
    return None


def test_delay_in_total_rows_does_not_grow_with_partitions(template: bytes) -> None:
    delays = {}
    for p in (1, 4, 12):
        runs = [_pooled_run(template, p, seed) for seed in range(3)]
        assert all(d is not None and d >= 0 for d, _ in runs), runs
        assert all(alarms == 1 for _, alarms in runs), runs  # one change, one alarm
        delays[p] = float(np.median([d for d, _ in runs if d is not None]))
    # The pooled chart sees the same interleaved rows whatever P: delays agree closely.
    assert max(delays.values()) <= 1.25 * min(delays.values()) + BATCH, delays
    # One detector per partition needs about P times more total rows.
    separate = _per_partition_run(template, 12, 0)
    assert separate is None or separate > 4 * delays[12], (separate, delays)


def test_pooled_counts_rows_and_rejects_bad_holdoff(template: bytes) -> None:
    det = DriftDetector.from_bytes(template)
    pooled = PooledDetector(det, holdoff=100)
    rng = np.random.default_rng(5)
    pooled.update(0, rng.normal(size=(30, 4)))
    pooled.update(3, rng.normal(size=(20, 4)))
    assert pooled.rows_seen == 50 and pooled.rows_by_partition == {0: 30, 3: 20}
    with pytest.raises(InvalidInputError, match="holdoff must be"):
        PooledDetector(det, holdoff=0)
