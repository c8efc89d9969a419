"""Hostile Arrow batches against a live worker on the real broker: the good rows of a fetch
survive every corrupted message beside them, each bad one is a dead letter, the worker stays
up and its committed offset reaches the end of the topic."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from driftline.schemas import ARROW_CONTENT_TYPE, CONTENT_TYPE_HEADER, DeadLetter, InferenceBatch
from driftline.streams.kafka.clients import make_producer
from tests.streams.ingest.conftest import PipelineRun, wait_for
from tests.streams.ingest.test_fuzz import mutate
from tests.streams.ingest.test_kafka_integration import committed_offset

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 60


def batch(pipeline: str, i: int, prefix: str) -> bytes:
    x = np.random.default_rng(i).normal(size=(ROWS, 3))
    ids = [f"{prefix}{i}-{j}" for j in range(ROWS)]
    return InferenceBatch.from_arrays(pipeline, ids, [T0] * ROWS, x, ["f0", "f1", "f2"]).to_ipc()


def test_corrupted_arrow_batches_cost_no_good_row(pipeline_run) -> None:
    run: PipelineRun = pipeline_run("hostile", detector={"reference_rows": 200})
    rng = np.random.default_rng(7)
    topic = run.settings.topics.inputs
    values = []
    for i in range(60):  # good and bit-flipped or truncated batches, interleaved
        values.append(batch(run.name, i, "g"))
        bad = mutate(rng, batch(run.name, i, "h"))
        while bad == batch(run.name, i, "h"):
            bad = mutate(rng, bad)
        values.append(bad)
    producer = make_producer(run.settings, linger_ms=20)
    for value in values:
        producer.produce(topic, value, headers=[(CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode())])
    assert producer.flush(60) == 0
    worker = run.start_worker()
    wait_for(
        lambda: committed_offset(run, topic) == len(values),
        180,
        f"offsets committed to the end ({len(values)})\n" + run.logs(),
    )
    assert worker.poll() is None, "the worker survived every corrupted batch"
    archive = run.store.archive(run.name)
    table = archive._read(archive._segments("rows", None, None))
    assert table is not None
    ids = set(table.column("event_id").to_pylist())
    good = {f"g{i}-{j}" for i in range(60) for j in range(ROWS)}
    assert good <= ids, "every good row was archived"
    archived = set(table.column("offset").to_pylist())
    dead = [DeadLetter.from_json(m.value()) for m in run.read(run.settings.topics.dlq)]
    dead_offsets = [d.source_offset for d in dead]
    assert len(dead_offsets) == len(set(dead_offsets)), "one dead letter per message"
    both = archived & set(dead_offsets)
    assert all(d.reason.value == "non_finite" for d in dead if d.source_offset in both)
    assert archived | set(dead_offsets) == set(range(len(values))), "no message vanished"
    assert len(dead) >= 20 and all(d.payload or d.payload_ref for d in dead)
