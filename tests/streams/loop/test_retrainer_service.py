"""The retrainer service on the real broker: drift in, a better model served out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from driftline.lifecycle_store.records import OutboxMessage
from driftline.retrainer.adapters import load_adapter
from driftline.schemas import (
    DeadLetter,
    DriftEvent,
    InferenceEvent,
    LabelEvent,
    LabelRequest,
    ModelVersionEvent,
)
from driftline.streams.admin import deployment_event
from driftline.streams.kafka.retrainer_service import RetrainerService
from driftline.streams.metrics import RetrainerMetrics
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep
from driftline.streams.sdk.subscriber import ModelSubscriber
from tests.streams.ingest.helpers import process
from tests.streams.loop.conftest import SIGNER

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def feed(
    step: MonitorStep, inputs: list[InferenceEvent], labels: list[LabelEvent] | None = None
) -> list[DriftEvent]:
    """What the worker does with {p}.inputs and {p}.labels, in process (with pooled detection
    the same step also merges its detector summaries, as the summaries' owner)."""
    topics = step.topics
    # Offsets follow the stream's event numbers, as on a single-partition topic.
    messages = [
        RawMessage(e.to_json(), topic=topics.inputs, offset=int(e.event_id[1:])) for e in inputs
    ]
    drifts = process(step, messages).drift_events if messages else []
    if labels:
        step.process_labels(
            [
                RawMessage(e.to_json(), topic=topics.labels, offset=int(e.event_id[1:]))
                for e in labels
            ]
        )
    return drifts


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


@pytest.fixture
def running() -> Iterator[Callable[[RetrainerService], threading.Thread]]:
    """Run services on threads; stop and close them after the test."""
    started: list[tuple[RetrainerService, threading.Thread]] = []

    def run(service: RetrainerService) -> threading.Thread:
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        started.append((service, thread))
        return thread

    yield run
    for service, thread in started:
        service.stop()
        thread.join(60)
        service.close()


def accuracy(event: ModelVersionEvent, store: Any, x: np.ndarray, y: np.ndarray) -> float:
    model = load_adapter(event.framework, store.load_model_artifact(event.model_version_id))
    return float(np.mean(model.predict(x.astype(np.float32)) == y))


def test_drift_to_a_better_served_model_with_delayed_labels(
    kafka_bootstrap: str, loop_pipeline_factory: Any, running: Any, read_topic: Any
) -> None:
    lp = loop_pipeline_factory()
    topics = lp.settings.topics
    store = lp.open_store()
    step = MonitorStep(lp.settings.config, store, pipeline=lp.name)
    metrics = RetrainerMetrics(lp.name)
    service = RetrainerService(lp.settings, tick_interval_s=0.5, metrics=metrics)
    running(service)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"pipeline": lp.name, **labels})

    with ModelSubscriber.from_settings(lp.settings) as sub:
        # Before the drift: labelled rows; the service's tick trains the first champion.
        inputs, labels, _, _ = lp.stream.events(1500, drifted=False)
        assert feed(step, inputs, labels) == []
        first = sub.wait(timeout=300)
        step.on_model_version(first)

        # The drift, labels not there yet: the alarm's training is SKIPPED and asks for labels.
        inputs, late_labels, _, _ = lp.stream.events(2000, drifted=True)
        drifts = feed(step, inputs)
        assert drifts, "the concept change was not detected"
        signed = SIGNER.sign(drifts[0])  # as the worker signs it
        produce(kafka_bootstrap, topics.drift, [(lp.name.encode(), signed.to_json())])
        requests = read_topic(topics.label_requests, expect=1, timeout=300)
        assert len(requests) == 1
        request = LabelRequest.from_json(requests[0].value())
        assert request.drift_id == drifts[0].drift_id
        assert set(request.event_ids) <= {e.event_id for e in inputs}
        assert sub.current_version == first
        assert _until(lambda: sample("driftline_alarms_waiting_for_labels") == 1.0)
        assert sample("driftline_label_requests_total") == 1.0
        assert sample("driftline_trainings_total", outcome="SKIPPED", trigger="drift") == 1.0

        # The labels come back, and no other alarm: the service trains the episode anyway.
        feed(step, [], late_labels)
        second = sub.wait(timeout=60, deployment_id=_next_deployment(sub, first, 300))

    # Lifecycle transfer: the new model warm-started from the champion's lifecycle.
    assert second.model_version_id != first.model_version_id
    assert second.parent_model_version_id == first.model_version_id
    x, y = lp.stream.sample(2000, drifted=True)
    old, new = accuracy(first, store, x, y), accuracy(second, store, x, y)
    assert new > old + 0.2, (old, new)
    trainings = store.trainings(lp.name, None)
    assert sorted(t.status for t in trainings) == ["COMPLETE", "COMPLETE", "SKIPPED"]
    # The subscriber may swap before the service has counted the outcome it just published.
    deadline = time.monotonic() + 30
    while service.stats.deployed < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.stats.deployed == 2
    assert sample("driftline_deployments_total") == 2.0
    assert sample("driftline_gate_decisions_total", decision="deploy") == 2.0
    assert sample("driftline_trainings_total", outcome="COMPLETE", trigger="drift") == 1.0
    assert _until(lambda: sample("driftline_alarms_waiting_for_labels") == 0.0)
    assert sample("driftline_training_seconds_count") == 2.0
    skipped = next(t for t in trainings if t.status == "SKIPPED")
    assert request.training_id == skipped.id
    # Attempts of one episode are keyed {episode}#{n}; the label wait was attempt 1.
    assert store.training(second_training(store, second)).episode_key == (
        f"{drifts[0].episode_key}#2"
    )
    store.close()


def _until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def second_training(store: Any, event: ModelVersionEvent) -> str:
    training_id = store.model_version(event.model_version_id).training_id
    assert training_id is not None
    return str(training_id)


def _next_deployment(sub: ModelSubscriber, first: ModelVersionEvent, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = sub.current_version
        if current is not None and current.deployment_id != first.deployment_id:
            return current.deployment_id
        time.sleep(0.1)
    raise AssertionError(f"no new deployment within {timeout}s; last error {sub.last_error}")


def test_pending_outbox_is_published_on_start_up(
    loop_pipeline_factory: Any, read_topic: Any
) -> None:
    """A deployment recorded just before a crash is published when the service starts."""
    import pyarrow as pa

    lp = loop_pipeline_factory()
    store = lp.open_store()
    pipeline = store.ensure_pipeline(lp.name, list(lp.stream.features), {})
    dv = store.snapshot(pipeline, pa.table({f: [0.0, 1.0] for f in lp.stream.features}))
    mv = store.register_model(
        pipeline, b"weights", framework="torch-mlp", params={}, metrics={}, data_version_id=dv.id
    )
    made: list[ModelVersionEvent] = []

    def outbox(deployment: Any, model: Any) -> OutboxMessage:
        made.append(deployment_event(store, deployment, model))
        return OutboxMessage(lp.settings.topics.model_versions, made[-1].key, made[-1].to_json())

    store.deploy(pipeline, "champion", mv.id, reason="recorded, then crashed", outbox=outbox)
    assert len(store.pending_outbox()) == 1
    service = RetrainerService(lp.settings)
    try:
        service.start_up()
    finally:
        service.close()
    assert service.stats.republished == 1
    records = read_topic(lp.settings.topics.model_versions, expect=1)
    unsigned = [
        ModelVersionEvent.from_json(r.value()).model_copy(
            update={"signature": None, "key_id": None}
        )
        for r in records
    ]
    assert unsigned == made
    assert all(ModelVersionEvent.from_json(r.value()).signature for r in records)
    assert records[0].key() == f"{lp.name}/champion".encode()
    assert store.pending_outbox() == []
    store.close()


def test_a_bad_drift_record_is_dead_lettered_and_the_service_goes_on(
    kafka_bootstrap: str, loop_pipeline_factory: Any, read_topic: Any
) -> None:
    lp = loop_pipeline_factory()
    topics = lp.settings.topics
    store = lp.open_store()
    step = MonitorStep(lp.settings.config, store, pipeline=lp.name)
    inputs, labels, _, _ = lp.stream.events(600, drifted=True)
    feed(step, inputs, labels)
    good = DriftEvent(
        drift_id="d-good",
        pipeline=lp.name,
        detector="mmd",
        statistic=3.0,
        threshold=1.0,
        window_start=inputs[0].timestamp,
        window_end=inputs[-1].timestamp + timedelta(seconds=1),
        rows_seen=600,
        reference_data_version=step.reference_data_version,
    )
    produce(
        kafka_bootstrap,
        topics.drift,
        [
            (None, b"{not json"),
            (None, good.model_copy(update={"pipeline": "other"}).to_json()),
            (None, SIGNER.sign(good).to_json()),
        ],
    )
    service = RetrainerService(lp.settings, tick_interval_s=60)
    stats = service.run(max_events=3)
    service.close()
    assert stats.invalid_events == 2
    assert stats.outcomes == {"COMPLETE": 1}
    letters = read_topic(topics.dlq, expect=2)
    dead = sorted((DeadLetter.from_json(m.value()) for m in letters), key=lambda d: d.reason)
    assert [d.reason.value for d in dead] == ["schema_violation", "wrong_pipeline"]
    assert dead[0].payload == b"{not json"
    assert dead[0].source_topic == topics.drift
    store.close()
