"""Where a change began: the backward search alone, and inside the monitor's DriftEvents."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from driftline.config.pipeline import PipelineConfig
from driftline.detectors.changepoint import estimate_change_point
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import ARROW_CONTENT_TYPE, CONTENT_TYPE_HEADER, InferenceBatch
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.helpers import process

ARROW = ((CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode()),)


@pytest.mark.parametrize("d", [4, 16, 64])
def test_sudden_changes_are_placed_within_a_few_rows(d: int) -> None:
    rng = np.random.default_rng(d)
    errors = []
    for _ in range(20):
        x = rng.normal(size=(2048, d))
        x[1900:, : max(1, d // 4)] += 0.7  # a small shift of a quarter of the features
        errors.append(abs(estimate_change_point(x).index - 1900))
    assert np.median(errors) <= 5 and max(errors) <= 50


def test_a_change_of_spread_is_placed_too() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 8))
    x[1700:, :4] *= 2.0
    est = estimate_change_point(x)
    assert abs(est.index - 1700) <= 20 and est.confident


def test_gradual_changes_land_inside_the_ramp() -> None:
    rng = np.random.default_rng(2)
    found = []
    for _ in range(20):
        x = rng.normal(size=(2048, 16))
        ramp = np.clip((np.arange(2048) - 1500) / 300, 0, 1)  # 1500 .. 1800
        x[:, :4] += ramp[:, None]
        found.append(estimate_change_point(x).index)
    assert 1500 <= np.median(found) <= 1800 and min(found) >= 1400


def test_no_change_is_not_confident() -> None:
    rng = np.random.default_rng(3)
    confident = [estimate_change_point(rng.normal(size=(2048, 16))).confident for _ in range(30)]
    assert sum(confident) <= 3


def test_drift_events_carry_the_change_point_of_their_partition() -> None:
    d = tempfile.mkdtemp()
    store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
    config = PipelineConfig(
        name="cp", detector={"reference_rows": 1000, "ert": 5000, "params": {"n_simulated": 20000}}
    )
    step = MonitorStep(config, store, pipeline="cp")
    rng = np.random.default_rng(0)
    n, change = 6000, 4000
    x = rng.normal(size=(n, 8))
    x[change:, :3] += 0.6
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    names = [f"f{i}" for i in range(8)]
    events = []
    for lo in range(0, n, 250):
        ids = [f"r{i}" for i in range(lo, lo + 250)]
        stamps = [t0 + timedelta(seconds=i) for i in range(lo, lo + 250)]
        batch = InferenceBatch.from_arrays("cp", ids, stamps, x[lo : lo + 250], names)
        msg = RawMessage(batch.to_ipc(), None, ARROW, topic="cp.inputs", offset=lo // 250)
        events += process(step, [msg]).drift_events
    store.close()
    first = next(e for e in events if e.window_end >= t0 + timedelta(seconds=change))
    assert all(e.window_end >= t0 + timedelta(seconds=change) for e in events)  # no false alarm
    [cp] = first.change_points
    began = (cp.timestamp - t0).total_seconds()
    assert abs(began - change) <= 50, (began, first.window_end)
    assert first.change_start == cp.timestamp < first.window_end
    assert all(0 <= f.score <= 1 for f in first.features)
    assert sum(f.score for f in first.features) <= 1 + 1e-9
