"""One label kind per pipeline: a string label after integer labels is a dead letter.

On main integer labels followed by one string label (a valid LabelEvent) archived a string
segment, and ``Archive.read_labels()`` raised ``ArrowTypeError: int64 vs string`` for every
later training.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep

STAMP = "2026-01-01T00:00:00Z"


def labels(step: MonitorStep, values: list[str], first_offset: int = 0) -> list[RawMessage]:
    return [
        RawMessage(
            f'{{"event_id": "e{first_offset + i}", "label": {v}, "timestamp": "{STAMP}"}}'.encode(),
            topic=step.topics.labels,
            offset=first_offset + i,
        )
        for i, v in enumerate(values)
    ]


def test_a_label_of_another_kind_is_a_dead_letter_even_after_a_restart(tmp_path: Path) -> None:
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    config = PipelineConfig(name="kinds", feature_names=["f0"])
    step = MonitorStep(config, store, pipeline="kinds")
    out = step.process_labels(labels(step, ["1", "2", '"cat"', "2.5"]))
    assert out.labels == 3  # integers and floats are both numbers
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [
        (2, "label_type_mismatch")
    ]
    assert "string label" in out.dead_letters[0].detail
    # A new worker (a restart) reads the pinned kind back from the archive.
    again = MonitorStep(config, store, pipeline="kinds")
    out = again.process_labels(labels(again, ['"dog"', "3"], first_offset=10))
    assert [d.reason.value for d in out.dead_letters] == ["label_type_mismatch"]
    table = store.archive("kinds").read_labels()
    assert table.num_rows == 4 and pa.types.is_floating(table.schema.field("label").type)
    store.close()


def test_regression_pins_numbers_before_any_label(tmp_path: Path) -> None:
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    config = PipelineConfig.from_dict(
        {"name": "reg", "feature_names": ["f0"], "label": {"task": "regression"}}
    )
    step = MonitorStep(config, store, pipeline="reg")
    out = step.process_labels(labels(step, ['"high"', "1.5"]))
    assert out.labels == 1 and [d.reason.value for d in out.dead_letters] == ["label_type_mismatch"]
    store.close()


def test_read_labels_reads_mixed_segments_archived_by_an_older_release(tmp_path: Path) -> None:
    """Segments of both kinds already in an archive: convert what converts, skip the rest."""
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    store.ensure_pipeline("old", ["f0"], {})
    archive = store.archive("old")
    ts = pa.array([0, 0], pa.timestamp("us", tz="UTC"))
    archive.append_labels(
        pa.table({"event_id": ["a", "b"], "label": pa.array([1, 2], pa.int64()), "timestamp": ts})
    )
    archive.append_labels(
        pa.table({"event_id": ["c", "d"], "label": ["3", "cat"], "timestamp": ts})
    )
    table = archive.read_labels()
    assert table.column("event_id").to_pylist() == ["a", "b", "c"]
    assert table.column("label").to_pylist() == [1, 2, 3]
    store.close()
