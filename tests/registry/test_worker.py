"""Wire-format inputs and labels through the real broker and the Faust worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline.schemas import DeadLetter
from driftline.streams.kafka.app import _while_registry_down
from driftline.streams.kafka.clients import make_producer
from driftline.streams.monitor.registry import RegistryUnavailable
from tests.registry.test_wire_format import EVENT_AVRO, LABEL_AVRO
from tests.streams.ingest.conftest import PipelineRun, free_port, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def run_factory(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[[str], PipelineRun]]:
    runs: list[PipelineRun] = []

    def make(registry: str) -> PipelineRun:
        name = unique_name("wire")
        run = PipelineRun(tmp_path / name, kafka_bootstrap, name)
        with run.config_file.open("a") as f:
            f.write(f'[schema_registry]\nurl = "{registry}"\ntimeout_s = 3\n')
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()
        run.delete_topics()


def produce_avro(run: PipelineRun, client: Any, n: int, unknown: int = 0) -> None:
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topics = run.settings.topics
    events = AvroSerializer(client, json.dumps(EVENT_AVRO))
    labels = AvroSerializer(client, json.dumps(LABEL_AVRO))
    x = np.random.default_rng(3).normal(size=(n, 2))
    producer = make_producer(run.settings)
    in_ctx = SerializationContext(topics.inputs, MessageField.VALUE)
    label_ctx = SerializationContext(topics.labels, MessageField.VALUE)
    for i in range(n):
        doc = {
            "event_id": f"row-{i}",
            "timestamp": "2026-01-01T00:00:00Z",
            "pipeline": run.name,
            "features": {"a": float(x[i, 0]), "b": float(x[i, 1])},
            "model_version": None,
        }
        producer.produce(topics.inputs, events(doc, in_ctx), key=f"k{i}".encode())
        label = {"event_id": f"row-{i}", "label": i % 2, "timestamp": doc["timestamp"]}
        producer.produce(topics.labels, labels({**label, "pipeline": None}, label_ctx))
        if i % 500 == 0:
            producer.poll(0)
    good = events({**doc, "event_id": "x"}, in_ctx)
    for j in range(unknown):
        bogus = b"\x00" + (2**31 - 100 - j).to_bytes(4, "big") + good[5:]
        producer.produce(topics.inputs, bogus, key=f"unknown-{j}".encode())
    assert producer.flush(60) == 0


def test_avro_inputs_and_labels_are_archived_and_unknown_ids_dead_lettered(
    run_factory, registry_url, client
) -> None:
    run = run_factory(registry_url)
    produce_avro(run, client, 3000, unknown=3)
    run.start_worker()
    wait_for(lambda: run.archived() >= 3000, 180, "3000 archived rows\n" + run.logs())
    dead = [DeadLetter.from_json(m.value()) for m in run.read(run.settings.topics.dlq, want=3)]
    assert [d.reason.value for d in dead] == ["unknown_schema"] * 3
    assert {d.key for d in dead} == {b"unknown-0", b"unknown-1", b"unknown-2"}
    rows = run.store.archive(run.name).read_rows()
    assert rows.num_rows == 3000
    assert set(rows.column("event_id").to_pylist()) == {f"row-{i}" for i in range(3000)}
    labels = wait_for(
        lambda: (t := run.store.archive(run.name).read_labels()).num_rows >= 3000 and t,
        60,
        "3000 archived labels\n" + run.logs(),
    )
    assert sorted(labels.column("label").to_pylist()) == sorted(i % 2 for i in range(3000))
    assert run.workers[0].poll() is None, run.logs()


def test_with_the_registry_down_the_worker_retries_and_dead_letters_nothing(
    run_factory, client
) -> None:
    run = run_factory(f"http://127.0.0.1:{free_port()}")
    produce_avro(run, client, 200)
    run.start_worker()
    wait_for(lambda: run.logs().count("trying the batch again") >= 2, 120, "retries\n" + run.logs())
    assert run.read(run.settings.topics.dlq, quiet_s=2, timeout=10) == []
    assert run.archived() == 0
    assert run.workers[0].poll() is None, run.logs()


class _Batch:
    messages = ("m",)

    def __init__(self) -> None:
        self.stale_after = 99


class _Reader:
    """The batch reader's `stale`: here, stale after ``batch.stale_after`` looks."""

    def stale(self, batch: Any) -> bool:
        batch.stale_after -= 1
        return bool(batch.stale_after < 0)


def test_a_batch_is_retried_until_the_registry_answers(monkeypatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    calls: list[Any] = []

    async def work(messages: Any) -> None:
        calls.append(messages)
        if len(calls) < 3:
            raise RegistryUnavailable("down")

    assert asyncio.run(_while_registry_down(_Reader(), _Batch(), work)) is True
    assert calls == [("m",)] * 3

    stale = _Batch()
    stale.stale_after = 0  # revoked while waiting: the batch belongs to someone else now

    async def never(messages: Any) -> None:
        raise RegistryUnavailable("down")

    assert asyncio.run(_while_registry_down(_Reader(), stale, never)) is False


_real_sleep = asyncio.sleep


async def _no_sleep(delay: float) -> None:
    await _real_sleep(0)
