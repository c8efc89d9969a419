"""Valid-looking but hostile input against a live worker on the real broker.

* An Arrow batch whose IPC bodies are ZSTD-compressed: the sender writes the decompressed
  size, so 8 kB asked the worker for 240 MB here (32,000 to 1), and a 1 MB Kafka message for
  about 30 GB. Refused unread: a ``schema_violation`` dead letter.
* One JSON event with a finite feature of 1e39: it made the default (MMD) detector's
  statistic NaN for good, so a drift right after it raised no alarm.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DeadLetter,
    DriftEvent,
    InferenceBatch,
    SchemaError,
)
from driftline.streams.kafka.clients import make_producer
from tests.streams.ingest.conftest import PipelineRun, wait_for
from tests.streams.ingest.test_kafka_integration import committed_offset

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 60
NAMES = ["f0", "f1", "f2"]
ARROW = [(CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode())]
BOMB_ROWS = 30_000_000  # 240 MB of float64 zeros once decompressed


def compression_bomb(pipeline: str, rows: int = BOMB_ROWS) -> bytes:
    """A ZSTD-compressed IPC stream of ``rows`` zeros (one float64 column)."""
    table = pa.table({"f0": pa.array(np.zeros(rows))}).replace_schema_metadata(
        {b"driftline.schema_version": b"1", b"driftline.pipeline": pipeline.encode()}
    )
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=rows)
    return sink.getvalue().to_pybytes()


def batch(pipeline: str, i: int, shift: float = 0.0) -> bytes:
    x = np.random.default_rng(i).normal(size=(ROWS, 3)) + np.array([shift, 0.0, 0.0])
    ids = [f"b{i}-{j}" for j in range(ROWS)]
    return InferenceBatch.from_arrays(pipeline, ids, [T0] * ROWS, x, NAMES).to_ipc()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_compressed_batch_is_refused_before_it_is_decompressed() -> None:
    bomb = compression_bomb("p", 1_000_000)
    assert len(bomb) < 50_000  # 8 MB of rows in a few kB
    try:
        InferenceBatch.from_ipc(bomb)
    except SchemaError as exc:
        assert "compression" in str(exc) and exc.reason == "schema_violation"
    else:
        raise AssertionError("a compressed batch was accepted")


def test_hostile_values_cost_a_live_worker_neither_memory_nor_its_detector(pipeline_run) -> None:
    run: PipelineRun = pipeline_run("hostile-values", detector={"reference_rows": 200})
    topic = run.settings.topics.inputs
    producer = make_producer(run.settings, linger_ms=20)
    for i in range(5):  # 300 rows: the bootstrap reference is the first 200
        producer.produce(topic, batch(run.name, i), headers=ARROW)
    assert producer.flush(60) == 0
    worker = run.start_worker()
    wait_for(lambda: run.archived() >= 300, 120, "the reference rows archived\n" + run.logs())
    before = _peak_rss_mb(worker.pid)

    bomb = compression_bomb(run.name)
    extreme = {
        "event_id": "extreme",
        "timestamp": "2026-01-01T00:00:00Z",
        "pipeline": run.name,
        "features": {"f0": 1e39, "f1": 0.0, "f2": 0.0},
    }
    values: list[tuple[bytes, list[tuple[str, bytes]] | None]] = [
        (bomb, ARROW),
        (json.dumps(extreme).encode(), None),
    ]
    values += [(batch(run.name, 100 + i, shift=3.0), ARROW) for i in range(40)]
    for value, headers in values:
        producer.produce(topic, value, headers=headers)
    assert producer.flush(60) == 0
    end = 5 + len(values)
    wait_for(lambda: committed_offset(run, topic) == end, 180, f"offsets at {end}\n" + run.logs())
    assert worker.poll() is None
    grown = _peak_rss_mb(worker.pid) - before

    drift = [DriftEvent.from_json(m.value()) for m in run.read(run.settings.topics.drift, want=1)]
    dead = [DeadLetter.from_json(m.value()) for m in run.read(run.settings.topics.dlq, want=1)]
    problems = [
        f"the worker's peak memory grew {grown:.0f} MB (the bomb is 240 MB)" if grown > 120 else "",
        "" if drift else "the +3 sd shift after the 1e39 row raised no alarm",
    ]
    assert not any(problems), problems
    assert [(d.source_offset, d.reason.value) for d in dead] == [(5, "schema_violation")]
    assert "compression" in dead[0].detail and dead[0].payload == bomb
    assert all(np.isfinite(d.statistic) for d in drift)
    assert run.archived() == 300 + 1 + 40 * ROWS


def test_a_label_too_large_for_int64_is_a_dead_letter_and_costs_no_other_label(
    tmp_path: Path,
) -> None:
    """It is valid JSON and a valid LabelEvent, but the archive keeps class labels as int64:
    on an earlier release ``process_labels`` raised for the whole fetch (OverflowError)."""
    from driftline.config.pipeline import PipelineConfig
    from driftline.lifecycle_store import LifecycleStore
    from driftline.streams.monitor.messages import RawMessage
    from driftline.streams.monitor.step import MonitorStep

    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    config = PipelineConfig(name="labels", feature_names=["f0"])
    step = MonitorStep(config, store, pipeline="labels")
    stamp = "2026-01-01T00:00:00Z"
    labels = ["1", str(2**63), "2", str(-(2**63) - 1), str(2**63 - 1)]
    messages = [
        RawMessage(
            f'{{"event_id": "e{i}", "label": {label}, "timestamp": "{stamp}"}}'.encode(),
            topic="labels.labels",
            offset=i,
        )
        for i, label in enumerate(labels)
    ]
    out = step.process_labels(messages)
    assert out.labels == 3
    assert [(d.source_offset, d.reason.value) for d in out.dead_letters] == [
        (1, "schema_violation"),
        (3, "schema_violation"),
    ]
    assert "int64" in out.dead_letters[0].detail
    store.close()


def test_a_reference_too_small_to_calibrate_is_refused_when_the_config_loads() -> None:
    """On an earlier release ``reference_rows = 20`` loaded, and the live worker's monitor
    agent crashed and restarted on every batch (the detectors need 40 rows), archiving
    nothing."""
    import pydantic

    from driftline.config.pipeline import DetectorConfig, PipelineConfig
    from driftline.detectors.base import _MIN_REFERENCE

    assert DetectorConfig(reference_rows=_MIN_REFERENCE).reference_rows == _MIN_REFERENCE
    try:
        PipelineConfig(name="small", detector={"reference_rows": _MIN_REFERENCE - 1})
    except pydantic.ValidationError as exc:
        assert "reference_rows" in str(exc)
    else:
        raise AssertionError("reference_rows below the detectors' minimum was accepted")
