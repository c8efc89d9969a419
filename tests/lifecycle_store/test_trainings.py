from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from driftline.lifecycle_store import (
    InvalidTransitionError,
    LifecycleStore,
    NotFoundError,
    StoreError,
)
from driftline.schemas import DriftEvent

Rows = Callable[..., pa.Table]


def _drift(drift_id: str, pipeline: str = "demo") -> DriftEvent:
    t = datetime(2024, 1, 2, tzinfo=UTC)
    return DriftEvent(
        drift_id=drift_id,
        pipeline=pipeline,
        detector="mmd",
        statistic=0.4,
        threshold=0.1,
        window_start=t,
        window_end=t,
        rows_seen=1000,
        reference_data_version="dv-ref",
    )


def test_begin_training_once_per_episode(store: LifecycleStore, pipeline: str) -> None:
    first, created = store.begin_training(
        pipeline, episode_key="ep1", trigger={"kind": "drift"}, config={"epochs": 3}
    )
    assert created and first.status == "NEW" and first.is_active
    again, created_again = store.begin_training(pipeline, episode_key="ep1", trigger={}, config={})
    assert not created_again and again.id == first.id and again.config == {"epochs": 3}
    other, created_other = store.begin_training(pipeline, episode_key="ep2", trigger={}, config={})
    assert created_other and other.id != first.id


@pytest.mark.parametrize("release", ["FAILED", "SKIPPED"])
def test_failed_or_skipped_releases_episode(
    store: LifecycleStore, pipeline: str, release: str
) -> None:
    tr, _ = store.begin_training(pipeline, episode_key="ep", trigger={}, config={})
    done = store.update_training(tr.id, status=release, reason="too few labels")
    assert done.status == release and done.reason == "too few labels"
    assert done.finished_at is not None
    retry, created = store.begin_training(pipeline, episode_key="ep", trigger={}, config={})
    assert created and retry.id != tr.id
    with pytest.raises(InvalidTransitionError, match=release):
        store.update_training(tr.id, status="RUNNING")


def test_lifecycle_of_statuses(store: LifecycleStore, pipeline: str, rows: Rows) -> None:
    tr, _ = store.begin_training(pipeline, episode_key="ep", trigger={}, config={})
    running = store.update_training(tr.id, status="RUNNING", resources={"cpu_s": 1.0})
    assert running.started_at is not None and running.finished_at is None
    dv = store.snapshot(pipeline, rows(30))
    mv = store.register_model(
        pipeline,
        b"m",
        framework="sklearn",
        params={},
        metrics={},
        data_version_id=dv.id,
        training_id=tr.id,
    )
    done = store.update_training(
        tr.id,
        status="COMPLETE",
        data_version_id=dv.id,
        model_version_id=mv.id,
        metrics={"acc": 0.9},
        resources={"wall_s": 2.0},
    )
    assert done.model_version_id == mv.id and done.data_version_id == dv.id
    assert done.resources == {"cpu_s": 1.0, "wall_s": 2.0}
    assert done.duration_s is not None and done.duration_s >= 0
    assert [t.id for t in store.trainings(pipeline, 10, status="COMPLETE")] == [tr.id]
    with pytest.raises(InvalidTransitionError, match="COMPLETE"):
        store.update_training(tr.id, status="FAILED")
    _, created = store.begin_training(pipeline, episode_key="ep", trigger={}, config={})
    assert not created


def test_bad_updates_change_nothing(store: LifecycleStore, pipeline: str) -> None:
    tr, _ = store.begin_training(pipeline, episode_key="ep", trigger={}, config={})
    with pytest.raises(StoreError, match="'DONE'"):
        store.update_training(tr.id, status="DONE")
    with pytest.raises(NotFoundError, match="mv-nope"):
        store.update_training(tr.id, status="COMPLETE", model_version_id="mv-nope")
    with pytest.raises(NotFoundError, match="tr-nope"):
        store.update_training("tr-nope", status="RUNNING")
    assert store.training(tr.id).status == "NEW"
    with pytest.raises(StoreError, match="episode_key"):
        store.begin_training(pipeline, episode_key="", trigger={}, config={})


def test_drift_events_are_idempotent_and_linked(store: LifecycleStore, pipeline: str) -> None:
    event = _drift("d1")
    rec = store.record_drift(event)
    assert store.record_drift(_drift("d1")) == rec
    assert rec.training_id is None and rec.statistic == 0.4
    assert rec.detected_at == event.detected_at
    assert DriftEvent.model_validate(rec.payload) == event
    store.record_drift(_drift("d2"))
    tr, _ = store.begin_training(
        pipeline, episode_key="ep", trigger={"drift_id": "d1"}, config={}, drift_ids=["d1"]
    )
    same, created = store.begin_training(
        pipeline, episode_key="ep", trigger={}, config={}, drift_ids=["d2"]
    )
    assert not created and same.id == tr.id
    assert {d.drift_id for d in store.drift_events(pipeline, training_id=tr.id)} == {"d1", "d2"}
    with pytest.raises(NotFoundError, match="d-unknown"):
        store.begin_training(
            pipeline, episode_key="ep3", trigger={}, config={}, drift_ids=["d-unknown"]
        )
    assert store.trainings(pipeline, episode_key="ep3") == []


def test_racing_processes_get_one_training(
    open_store: Callable[[], LifecycleStore], store: LifecycleStore, pipeline: str
) -> None:
    n = 6
    stores = [open_store() for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def claim(s: LifecycleStore) -> None:
        try:
            barrier.wait()
            tr, created = s.begin_training(pipeline, episode_key="race", trigger={}, config={})
            results.append((tr.id, created))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({tid for tid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(store.trainings(pipeline, episode_key="race")) == 1
