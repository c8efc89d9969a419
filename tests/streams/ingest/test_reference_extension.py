"""A champion's small training set grows into a full reference from the archive."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from driftline.detectors import SmallReferenceWarning
from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.admission import stale_reason
from driftline.schemas import DriftEvent
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.helpers import JSON_HEADERS, batches, config, open_store, process

P = "ext"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# reference_rows=400 and window=100 (the helpers' config): a champion trained on 150 rows
# needs 250 more, each taken once 100 newer rows are archived after it.
CHAMPION = slice(400, 550)


def stream(n: int, shift_at: int | None = None, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    if shift_at is not None:
        x[shift_at:] += 3.0
    return x


def msgs(x: np.ndarray, lo: int, hi: int) -> list[RawMessage]:
    """Rows ``lo:hi``, one second apart, one JSON message each."""
    out = []
    for i in range(lo, hi):
        body = {
            "event_id": f"e{i:06d}",
            "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
            "pipeline": P,
            "features": {f"f{j}": float(v) for j, v in enumerate(x[i])},
        }
        out.append(RawMessage(orjson.dumps(body), None, JSON_HEADERS, f"{P}.inputs", 0, i))
    return out


def feed(step: MonitorStep, x: np.ndarray, lo: int, hi: int) -> list[DriftEvent]:
    events: list[DriftEvent] = []
    for batch in batches(msgs(x, lo, hi), 50):
        events += process(step, batch).drift_events
    return events


def deploy_small_champion(store: LifecycleStore) -> str:
    """Deploy a model trained on rows 400..549 (the archive's), as a drift retraining does."""
    rows = store.archive(P).read_rows().slice(CHAMPION.start, CHAMPION.stop - CHAMPION.start)
    version = store.snapshot(P, rows, combine="root")
    model = store.register_model(
        P, b"w", framework="torch-mlp", params={}, metrics={}, data_version_id=version.id
    )
    store.deploy(P, "champion", model.id, reason="drift retraining")
    return version.id


def start(
    tmp_path: Path, x: np.ndarray, detection: str = "pooled"
) -> tuple[LifecycleStore, MonitorStep, str]:
    store = open_store(tmp_path)
    step = MonitorStep(config(P, detection=detection), store, pipeline=P)
    feed(step, x, 0, 600)
    short = deploy_small_champion(store)
    with pytest.warns(SmallReferenceWarning):
        step.sync_reference()
    assert step.reference_data_version == short
    return store, step, short


@pytest.mark.parametrize("detection", ["pooled", "per_partition"])
def test_the_short_reference_grows_to_reference_rows_once_the_archive_holds_them(
    tmp_path: Path, detection: str
) -> None:
    x = stream(1200)
    store, step, short = start(tmp_path, x, detection)
    feed(step, x, 600, 850)  # rows up to 849 archived: 150 + 200 usable, 50 short
    assert step.reference_data_version == short
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallReferenceWarning)  # the full one calibrates
        feed(step, x, 850, 1200)
    grown = store.data_version(step.reference_data_version or "")
    assert grown.combine == "append" and grown.parents == (short,)
    assert grown.row_count == 400
    ids = store.read_data_version(grown.id).column("event_id").to_pylist()
    assert ids == [f"e{i:06d}" for i in range(400, 800)]  # the champion's rows, then the next
    assert step.reference_deployment_id == store.history(P, "champion")[-1].id
    if detection == "pooled":  # the chart runs on the full one
        pool = step.pool
        assert pool is not None and pool.reference == grown.id and pool.rows_seen > 0
    else:
        detector = step.detector(0)
        assert detector is not None and detector.n_seen > 0


def test_alarms_against_the_grown_reference_name_the_champions_data(tmp_path: Path) -> None:
    x = stream(1600, shift_at=1300)
    store, step, short = start(tmp_path, x)
    feed(step, x, 600, 1200)
    grown = step.reference_data_version
    assert grown != short
    events = feed(step, x, 1200, 1600)
    assert events and events[0].reference_data_version == short  # the episode's reference
    assert stale_reason(store, P, events[0]) is None  # so the retrainer admits it
    assert step.reference_data_version == grown  # and the alarm left the reference alone
    # The same model deployed again (a rollback) keeps the grown reference: no refit.
    model = store.current(P, "champion")
    assert model is not None
    store.deploy(P, "champion", model.id, reason="again")
    step.sync_reference()
    assert step.reference_data_version == grown
    assert step.reference_deployment_id == store.history(P, "champion")[-1].id


def test_a_restart_mid_extension_builds_the_same_reference(tmp_path: Path) -> None:
    x = stream(1200)
    store, step, _ = start(tmp_path / "a", x)
    feed(step, x, 600, 1200)
    uninterrupted = step.reference_data_version
    store.close()

    store, step, short = start(tmp_path / "b", x)
    feed(step, x, 600, 800)
    state = step.state_bytes()
    with pytest.warns(SmallReferenceWarning):  # a new worker installs the champion first
        restarted = MonitorStep(config(P), store, pipeline=P)
    restarted.restore(state)
    assert restarted.reference_data_version == short
    feed(restarted, x, 800, 1200)
    assert restarted.reference_data_version == uninterrupted
    store.close()


@pytest.mark.parametrize("detection", ["pooled", "per_partition"])
def test_an_alarm_on_the_short_reference_keeps_the_new_concept_out(
    tmp_path: Path, detection: str
) -> None:
    x = stream(1400, shift_at=700)
    store, step, short = start(tmp_path, x, detection)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallReferenceWarning)
        events = feed(step, x, 600, 1400)
    assert events, "the shift was not caught by the short reference"
    assert events[0].reference_data_version == short
    # Only 300 rows lie before the change: the short reference stays, nothing was appended.
    assert step.reference_data_version == short
    assert [v.combine for v in store.data_versions(P)].count("append") == 0


def test_an_alarm_another_worker_raised_bounds_the_extension_too(tmp_path: Path) -> None:
    x = stream(1200)
    store, step, short = start(tmp_path, x)
    # The pipeline chart's owner raised an alarm against this deployment, placing the change
    # at row 650; the retrainer recorded it. This worker saw no alarm itself.
    deployment = store.history(P, "champion")[-1].id
    change = T0 + timedelta(seconds=650)
    store.record_drift(
        DriftEvent(
            drift_id="d-other-worker",
            pipeline=P,
            detector="mmd",
            statistic=2.0,
            threshold=1.0,
            window_start=change,
            window_end=change + timedelta(seconds=10),
            rows_seen=100,
            reference_data_version=short,
            reference_deployment_id=deployment,
        )
    )
    feed(step, x, 600, 1200)
    assert step.reference_data_version == short  # 250 rows before row 650: too few
