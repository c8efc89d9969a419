"""Builders shared by the ingest tests: events, messages, stores and configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorOutput, MonitorStep

JSON_HEADERS = ((CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),)


def names(d: int) -> list[str]:
    return [f"f{j}" for j in range(d)]


def event_bytes(pipeline: str, i: int, row: Sequence[float], feature_names: Sequence[str]) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"row-{i}",
            "timestamp": "2026-01-01T00:00:00Z",
            "pipeline": pipeline,
            "features": dict(zip(feature_names, map(float, row), strict=True)),
        }
    )


def messages(
    pipeline: str,
    x: np.ndarray,
    *,
    first: int = 0,
    partition: int = 0,
    partitions: int = 1,
) -> list[RawMessage]:
    """One JSON message per row; with several partitions rows go round-robin and each
    partition numbers its own offsets from 0."""
    fnames = names(x.shape[1])
    out = []
    for i, row in enumerate(x, start=first):
        p = partition if partitions == 1 else i % partitions
        offset = i if partitions == 1 else i // partitions
        out.append(
            RawMessage(
                event_bytes(pipeline, i, row, fnames),
                None,
                JSON_HEADERS,
                f"{pipeline}.inputs",
                p,
                offset,
            )
        )
    return out


def config(
    pipeline: str,
    *,
    ert: int = 2000,
    reference_rows: int = 400,
    detection: str = "pooled",
    **detector: object,
) -> PipelineConfig:
    params = {"n_simulated": 50_000, "window": 100, "seed": 0}
    params.update(detector)
    return PipelineConfig(
        name=pipeline,
        detector={"kind": "mmd", "ert": ert, "reference_rows": reference_rows, "params": params},
        detection=detection,
    )


def process(step: MonitorStep, batch: Sequence[RawMessage]) -> MonitorOutput:
    """``step.process(batch)``, with its detector summaries merged by the same step (the
    owner of the pipeline chart, as a single worker is): the DriftEvents and the statistic
    of the pooled chart are folded into the output."""
    out = step.process(batch)
    if out.summaries:
        topic = step.topics.detector_summaries
        merged = step.merge_summaries(
            [RawMessage(s, None, (), topic, 0, i) for i, s in enumerate(out.summaries)]
        )
        assert merged.dead_letters == [], merged.dead_letters
        out.drift_events += merged.drift_events
        out.suppressed_alarms += merged.suppressed_alarms
        out.statistic, out.threshold = merged.statistic, merged.threshold
    return out


def open_store(tmp_path: Path) -> LifecycleStore:
    return LifecycleStore.open(
        f"sqlite:///{tmp_path}/store.db", artifacts=str(tmp_path / "artifacts")
    )


def batches(items: list[RawMessage], size: int) -> list[list[RawMessage]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
