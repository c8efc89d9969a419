"""Labels that arrive before any input are held in memory up to a cap, never silently dropped.

On main they were held without limit (200,000 labels: +83 MB) until the first input row.
"""

from __future__ import annotations

import json
from pathlib import Path

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import LabelEvent
from driftline.streams.monitor.early_labels import MAX_EARLY_LABELS
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep


def test_labels_beyond_the_cap_are_dead_letters_oldest_first(tmp_path: Path) -> None:
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    step = MonitorStep(PipelineConfig(name="early"), store, pipeline="early")
    extra = 25
    messages = [
        RawMessage(
            json.dumps(
                {"event_id": f"e{i}", "label": i % 2, "timestamp": "2026-01-01T00:00:00Z"}
            ).encode(),
            topic=step.topics.labels,
            offset=i,
        )
        for i in range(MAX_EARLY_LABELS + extra)
    ]
    held = 0
    dead = []
    for lo in range(0, len(messages), 5000):
        out = step.process_labels(messages[lo : lo + 5000])
        held += out.labels
        dead += out.dead_letters
    assert step.holds_labels
    assert len(step._early_labels) == MAX_EARLY_LABELS
    assert [d.source_offset for d in dead] == list(range(extra))  # the oldest
    assert {d.reason.value for d in dead} == {"early_label_overflow"}
    first = LabelEvent.from_json(dead[0].payload)
    assert (first.event_id, first.label) == ("e0", 0)
    assert str(MAX_EARLY_LABELS) in dead[0].detail
    store.close()
