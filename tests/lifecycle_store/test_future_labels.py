"""A label stamped far in the future must not outrank every later correction of its event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep


def _label(step: MonitorStep, event: str, label: int, stamp: str, offset: int) -> RawMessage:
    value = f'{{"event_id": "{event}", "label": {label}, "timestamp": "{stamp}"}}'
    return RawMessage(value.encode(), topic=step.topics.labels, offset=offset)


def test_a_label_stamped_in_9998_counts_as_of_its_archiving(tmp_path: Path) -> None:
    """On main the latest label by timestamp won, so one hostile label stamped 9998 pinned its
    event's label for good: the correction sent after it (stamped with the real time) lost."""
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    step = MonitorStep(PipelineConfig(name="lab", feature_names=["f0"]), store, pipeline="lab")
    old = "2020-01-01T00:00:00Z"  # a replay of an old label still loses to a correction
    step.process_labels([_label(step, "e1", 1, "9998-12-31T00:00:00Z", 0)])
    step.process_labels([_label(step, "e2", 1, "2026-01-01T00:00:00Z", 1)])
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    step.process_labels([_label(step, "e1", 0, now, 2), _label(step, "e2", 0, now, 3)])
    step.process_labels([_label(step, "e2", 1, old, 4)])
    labels = store.archive("lab").read_labels().to_pylist()
    assert [(r["event_id"], r["label"]) for r in labels] == [("e1", 0), ("e2", 0)]
    assert set(labels[0]) == {"event_id", "label", "timestamp", "topic", "partition", "offset"}
    assert store.archive("lab").read_labels(["e1"]).num_rows == 1
    store.close()
