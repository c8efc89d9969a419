"""The embedded runner moves messages between the shared steps exactly like a transport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import DeadLetter
from driftline.streams.embedded.bus import InMemoryBus
from driftline.streams.embedded.runner import EmbeddedRunner, LabelledStream

SHIFT_AT = 2500
LABEL_DELAY = 100


def _config(name: str) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "name": name,
            "bootstrap_rows": 800,
            "detector": {"ert": 50_000},
            "selection": {"max_rows": 900, "min_labelled_rows": 800},
            "model": {"epochs": 10},
        }
    )


def _stream(rows: int = 3800, shift: float = 3.0) -> LabelledStream:
    """Two Gaussian blobs; from SHIFT_AT on the inputs move and the boundary moves with them."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(rows, 4))
    X[SHIFT_AT:, :2] += shift
    y = (X[:, 0] + X[:, 1] > (2 * shift if shift else 0) * (np.arange(rows) >= SHIFT_AT)).astype(
        np.int64
    )
    return LabelledStream.from_arrays(X, y, ["a", "b", "c", "d"], label_delay=LABEL_DELAY)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LifecycleStore]:
    opened = LifecycleStore.open(f"sqlite:///{tmp_path / 's.db'}", artifacts=str(tmp_path / "a"))
    yield opened
    opened.close()


@pytest.mark.slow
def test_a_drift_is_detected_trained_on_labelled_new_rows_and_deployed(
    store: LifecycleStore,
) -> None:
    bus = InMemoryBus()
    result = EmbeddedRunner(_config("shifted"), store, bus=bus).replay(_stream())
    alarm_rows = [a.row for a in result.alarms]
    assert alarm_rows and all(r >= SHIFT_AT for r in alarm_rows)
    first = alarm_rows[0]
    assert first - SHIFT_AT < 100
    bootstrap, *retrained = [t for t in result.trainings if t.status == "COMPLETE"]
    assert bootstrap.trigger == "bootstrap" and bootstrap.deployed
    drift_training = next(t for t in retrained if t.trigger == "drift")
    # Handed over at once, the alarm trains once 800 rows from its change point on have
    # their labels, so the new data version holds rows of the new concept only (the change
    # point estimate may fall a few rows early; its accuracy is tested with the detectors).
    assert drift_training.row >= SHIFT_AT + 800 + LABEL_DELAY
    assert drift_training.deployed
    assert drift_training.data_version_id is not None
    table = store.read_data_version(drift_training.data_version_id)
    rows = [int(e.split("-")[1]) for e in table.column("event_id").to_pylist()]
    assert min(rows) >= SHIFT_AT - 20
    # The store's champion history and the record agree, and the model-versions topic is
    # compacted down to the latest champion.
    history = store.history("shifted", "champion")
    assert [d.model_version_id for d in result.deployments] == [
        h.model_version_id for h in sorted(history, key=lambda h: h.deployed_at)
    ]
    latest = bus.consumer("late-subscriber", ["shifted.model-versions"]).poll()
    assert len(latest) == 1 and result.deployments[-1].model_version_id.encode() in latest[0].value


@pytest.mark.slow
def test_json_and_arrow_transports_give_the_same_run(tmp_path: Path) -> None:
    runs = []
    for encoding in ("arrow", "json"):
        with LifecycleStore.open(
            f"sqlite:///{tmp_path / encoding}.db", artifacts=str(tmp_path / encoding)
        ) as store:
            stream = _stream(rows=2000, shift=0.0)
            runner = EmbeddedRunner(_config(f"enc-{encoding}"), store, encoding=encoding)
            runs.append(runner.replay(stream))
    arrow, json = runs
    assert [p.statistic for p in arrow.points] == pytest.approx([p.statistic for p in json.points])
    assert [a.row for a in arrow.alarms] == [a.row for a in json.alarms] == []
    assert [t.row for t in arrow.trainings] == [t.row for t in json.trainings]


@pytest.mark.parametrize(
    ("encoding", "reason"), [("arrow", "non_finite"), ("json", "schema_violation")]
)
def test_bad_rows_become_dead_letters_and_the_run_goes_on(
    store: LifecycleStore, encoding: str, reason: str
) -> None:
    stream = _stream(rows=400, shift=0.0)
    X = stream.X.copy()
    X[123, 2] = np.inf
    bad = LabelledStream.from_arrays(X, stream.y, stream.feature_names, label_delay=LABEL_DELAY)
    bus = InMemoryBus()
    bus.produce("dirty.inputs", b"{not json")
    result = EmbeddedRunner(_config("dirty"), store, bus=bus, encoding=encoding).replay(bad)
    assert result.dead_letters == 2
    letters = [DeadLetter.from_json(m.value) for m in bus.consumer("ops", ["dirty.dlq"]).poll()]
    assert sorted(d.reason.value for d in letters) == sorted(["malformed", reason])
    assert any(b"row-123" in d.payload or "row-123" in d.detail for d in letters)
    assert store.archive("dirty").row_count() == 399


def test_stream_rejects_inputs_it_cannot_replay() -> None:
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="shape \\(3, 2\\) but 3 feature names"):
        LabelledStream.from_arrays(X, np.zeros(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="X has 3 rows but y has 2"):
        LabelledStream.from_arrays(X, np.zeros(2), ["a", "b"])
    stamps = np.array(["2026-01-02", "2026-01-01", "2026-01-03"], dtype="datetime64[us]")
    with pytest.raises(ValueError, match="timestamps go backwards"):
        LabelledStream.from_arrays(X, np.zeros(3), ["a", "b"], timestamps=stamps)
    with pytest.raises(ValueError, match="own id"):
        LabelledStream.from_arrays(X, np.zeros(3), ["a", "b"], event_ids=["x", "x", "y"])
