"""One model version per drift episode, whatever happens: SIGKILL mid-training, a second
instance in the group, re-delivered events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from driftline.schemas import DriftEvent, InferenceEvent, ModelVersionEvent
from driftline.streams.kafka.retrainer_service import RetrainerService
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep
from tests.streams.loop.conftest import SIGNER

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLI = [sys.executable, "-c", "from driftline.streams.cli import main; main()"]


def archive_drifted(lp: Any, rows: int) -> tuple[MonitorStep, list[InferenceEvent]]:
    """Archive labelled rows of the drifted concept as the worker would; returns the step."""
    store = lp.open_store()
    step = MonitorStep(lp.settings.config, store, pipeline=lp.name)
    inputs, labels, _, _ = lp.stream.events(rows, drifted=True)
    step.process(
        [RawMessage(e.to_json(), topic=step.topics.inputs, offset=i) for i, e in enumerate(inputs)]
    )
    step.process_labels(
        [RawMessage(e.to_json(), topic=step.topics.labels, offset=i) for i, e in enumerate(labels)]
    )
    return step, inputs


def drift_event(step: MonitorStep, inputs: list[InferenceEvent], drift_id: str) -> DriftEvent:
    return DriftEvent(
        drift_id=drift_id,
        pipeline=step.pipeline,
        detector="mmd",
        statistic=5.0,
        threshold=1.0,
        window_start=inputs[0].timestamp,
        window_end=inputs[-1].timestamp + timedelta(seconds=1),
        rows_seen=len(inputs),
        reference_data_version=step.reference_data_version,
    )


def send(bootstrap: str, topic: str, event: DriftEvent, partition: int = 0) -> None:
    """``event`` signed as the monitor signs it (the retrainer refuses unsigned alarms)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    value = SIGNER.sign(event).to_json()
    producer.produce(topic, key=event.pipeline.encode(), value=value, partition=partition)
    assert producer.flush(30) == 0


def published(bootstrap: str, topic: str, wait_s: float = 4.0) -> list[ModelVersionEvent]:
    """Every record on the model-versions topic (reads until ``wait_s`` of silence)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    events: list[ModelVersionEvent] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < wait_s:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            events.append(ModelVersionEvent.from_json(message.value()))
            quiet_since = time.monotonic()
    consumer.close()
    return events


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sigkill_mid_training_then_restart_trains_the_episode_once(
    kafka_bootstrap: str, loop_pipeline_factory: Any, tmp_path: Path
) -> None:
    # Long enough a training (seconds) to be killed in the middle of it.
    lp = loop_pipeline_factory(model={"epochs": 150, "patience": 1000, "params": {"hidden": [32]}})
    step, inputs = archive_drifted(lp, 2000)
    store = step.store
    event = drift_event(step, inputs, "d-crash")
    send(kafka_bootstrap, lp.settings.topics.drift, event)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    args = [*CLI, "retrainer", "--config", str(lp.config_file), "--tick-interval", "3600"]

    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        running = wait_for(
            lambda: store.trainings(lp.name, None, status="RUNNING"), 120, "a RUNNING training"
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    # Killed mid-training: nothing finished, nothing deployed, nothing published.
    assert store.training(running[0].id).status == "RUNNING"
    assert store.model_versions(lp.name) == []
    assert store.history(lp.name) == []
    assert published(kafka_bootstrap, lp.settings.topics.model_versions, 2.0) == []

    # Restart: the uncommitted drift event comes again; the interrupted training is released.
    restart = [*args, "--stale-after", "0", "--max-events", "1"]
    with (tmp_path / "second.log").open("w") as log:
        second = subprocess.run(restart, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=240)
    assert second.returncode == 0, (tmp_path / "second.log").read_text()[-3000:]

    # Attempts of one episode are keyed {episode}#{n}.
    trainings = [
        t for t in store.trainings(lp.name, None) if t.episode_key.startswith(event.episode_key)
    ]
    assert sorted(t.status for t in trainings) == ["COMPLETE", "FAILED"]
    failed = next(t for t in trainings if t.status == "FAILED")
    assert failed.id == running[0].id and "interrupted" in (failed.reason or "")
    models = store.model_versions(lp.name)
    history = store.history(lp.name)
    assert len(models) == 1 and [d.model_version_id for d in history] == [models[0].id]
    assert store.pending_outbox() == []
    events = published(kafka_bootstrap, lp.settings.topics.model_versions)
    assert [e.deployment_id for e in events] == [history[0].id]
    assert events[0].model_version_id == models[0].id
    store.close()


def test_two_instances_and_redelivered_events_give_one_model_version(
    kafka_bootstrap: str, loop_pipeline_factory: Any
) -> None:
    lp = loop_pipeline_factory(partitions=2)
    step, inputs = archive_drifted(lp, 1500)
    store = step.store
    first = drift_event(step, inputs, "d-1")
    again = first.model_copy(update={"drift_id": "d-2", "statistic": 7.0})
    topic = lp.settings.topics.drift
    # The same alarm on both partitions (a producer retry), plus a second alarm of the episode.
    send(kafka_bootstrap, topic, first, partition=0)
    send(kafka_bootstrap, topic, first, partition=1)
    send(kafka_bootstrap, topic, again, partition=1)

    services = [RetrainerService(lp.settings, tick_interval_s=3600) for _ in range(2)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in services]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: (
                sum(
                    sum(s.stats.outcomes.values()) + sum(s.stats.refused.values()) for s in services
                )
                >= 3
            ),
            180,
            "three handled drift events",
        )
    finally:
        for service in services:
            service.stop()
        for thread, service in zip(threads, services, strict=True):
            thread.join(60)
            service.close()
    outcomes: dict[str, int] = {}
    for service in services:
        for status, n in service.stats.outcomes.items():
            outcomes[status] = outcomes.get(status, 0) + n
    refused: dict[str, int] = {}
    for service in services:
        for reason, n in service.stats.refused.items():
            refused[reason] = refused.get(reason, 0) + n
    # A rebalance may re-deliver an event to the other instance: more DUPLICATEs, never a
    # second training. An alarm handled once the model is deployed names a reference no
    # longer in force: stale, ignored before the store is touched.
    assert outcomes["COMPLETE"] == 1
    assert outcomes.get("DUPLICATE", 0) + refused.get("stale", 0) >= 2
    assert set(outcomes) <= {"COMPLETE", "DUPLICATE"} and set(refused) <= {"stale"}
    trainings = store.trainings(lp.name, None)
    assert [t.status for t in trainings] == ["COMPLETE"]
    assert len(store.model_versions(lp.name)) == 1
    assert len(store.history(lp.name)) == 1
    assert {d.drift_id for d in store.drift_events(lp.name)} <= {"d-1", "d-2"}
    events = published(kafka_bootstrap, lp.settings.topics.model_versions)
    assert [e.deployment_id for e in events] == [store.history(lp.name)[0].id]
    store.close()
