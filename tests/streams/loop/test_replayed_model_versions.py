"""Replayed model-version events against a real broker: no subscriber rolls back to them.

Anyone who can read ``{p}.model-versions`` holds every validly signed deployment ever made;
anyone who can also write can send an old one again. Its signature is genuine, so only the
order of deployments tells it apart: the signed ``deployment_seq`` (the deployment's place in
its alias's history). On an earlier release a replayed old deployment was served by a live
subscriber (it had not applied that deployment id itself) and by a fresh one (the last record
read won), and five junk records after the champion left a fresh subscriber serving nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from driftline.schemas import ModelVersionEvent, ModelVersionSigner, Topics
from driftline.streams.sdk.subscriber import ModelSubscriber
from tests.streams.loop.test_subscriber import constant_loader

pytestmark = pytest.mark.kafka

X = np.zeros((2, 1))


def _send_raw(bootstrap: str, topic: str, key: bytes, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in values:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _history(
    pipeline: str, event_factory: Any, signer: ModelVersionSigner
) -> tuple[ModelVersionEvent, ModelVersionEvent]:
    """Two signed deployments of one alias, as the retrainer publishes them (seq 1, then 2)."""
    old = signer.sign(event_factory(pipeline, 1.0, deployment_seq=1))
    new = signer.sign(event_factory(pipeline, 2.0, deployment_seq=2))
    return old, new


SERVICE = """
import json, sys, time
from driftline import ModelSubscriber
bootstrap, pipeline, artifacts, key = sys.argv[1:]

class Constant:
    def __init__(self, value): self.value = value
    def predict(self, x): return [self.value] * len(x)

def loader(event, data):
    return Constant(json.loads(data)["value"])

def report(sub):
    served = sub.current_version
    print(json.dumps({"served": served and served.model_version_id, "failures": sub.failures,
                      "healthy": sub.healthy,
                      "reason": sub.last_error and sub.last_error.reason}), flush=True)

sub = ModelSubscriber(bootstrap, pipeline, loader=loader, verify_keys=[key], artifacts=artifacts)
sub.start()
sub.wait_until_ready(60)
report(sub)
sys.stdin.readline()  # the test has replayed the old deployment
failures, deadline = sub.failures, time.monotonic() + 30
served = sub.current_version
while time.monotonic() < deadline and sub.failures == failures and sub.current_version == served:
    time.sleep(0.05)
time.sleep(0.5)
report(sub)
sub.stop()
"""


def test_a_live_consumer_service_does_not_roll_back_to_a_replayed_deployment(
    signer: ModelVersionSigner,
    tmp_path: Path,
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
) -> None:
    pipeline = pipeline_factory()
    topic = Topics(pipeline).model_versions
    old, new = _history(pipeline, event_factory, signer)
    _send_raw(kafka_bootstrap, topic, new.key, [old.to_json(), new.to_json()])
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(SERVICE))
    service = subprocess.Popen(
        [sys.executable, str(script), kafka_bootstrap, pipeline, str(tmp_path), signer.public_key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None and service.stdin is not None
        ready = json.loads(service.stdout.readline() or "null")
        assert ready is not None, service.stderr.read() if service.stderr else ""
        assert ready["served"] == "mv-2" and ready["healthy"], ready
        # The attacker copies the old deployment's record, byte for byte, to the end.
        _send_raw(kafka_bootstrap, topic, old.key, [old.to_json()])
        service.stdin.write("replayed\n")
        service.stdin.flush()
        after = json.loads(service.stdout.readline() or "null")
        assert service.wait(timeout=60) == 0
    finally:
        if service.poll() is None:
            service.kill()
    assert after is not None
    assert after["served"] == "mv-2", after  # on the earlier release: mv-1
    assert after["failures"] == 1 and "stale" in after["reason"], after
    assert after["healthy"], after  # the newest deployment is still the one served


def _fresh_subscriber(bootstrap: str, pipeline: str, trusted: dict[str, Any]) -> ModelSubscriber:
    return ModelSubscriber(bootstrap, pipeline, loader=constant_loader, **trusted)


def test_a_fresh_subscriber_serves_the_newest_deployment_not_the_last_record(
    trusted: dict[str, Any],
    signer: ModelVersionSigner,
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
) -> None:
    pipeline = pipeline_factory()
    old, new = _history(pipeline, event_factory, signer)
    records = [old.to_json(), new.to_json(), old.to_json()]  # the last one is replayed
    _send_raw(kafka_bootstrap, Topics(pipeline).model_versions, new.key, records)
    with _fresh_subscriber(kafka_bootstrap, pipeline, trusted) as sub:
        served = sub.current_version
        assert served is not None and served.deployment_id == new.deployment_id
        assert sub.predict(X).tolist() == [2.0, 2.0]
        assert sub.healthy


def test_junk_records_after_the_champion_do_not_leave_a_fresh_subscriber_without_a_model(
    trusted: dict[str, Any],
    signer: ModelVersionSigner,
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
) -> None:
    pipeline = pipeline_factory()
    old, new = _history(pipeline, event_factory, signer)
    unsigned = [event_factory(pipeline, 9.0).to_json() for _ in range(8)]
    _send_raw(
        kafka_bootstrap,
        Topics(pipeline).model_versions,
        new.key,
        [old.to_json(), new.to_json(), *unsigned],
    )
    with _fresh_subscriber(kafka_bootstrap, pipeline, trusted) as sub:
        served = sub.current_version
        assert served is not None and served.deployment_id == new.deployment_id  # was None
        assert sub.failures == len(unsigned)
        assert sub.last_error is not None and "unsigned" in sub.last_error.reason


def test_apply_refuses_an_older_deployment_and_counts_it(
    trusted: dict[str, Any], signer: ModelVersionSigner, event_factory: Any
) -> None:
    """Without the broker: what the subscriber does with each event it reads."""
    old, new = _history("replay-unit", event_factory, signer)
    rollback = signer.sign(event_factory("replay-unit", 1.0, deployment_seq=3))
    registry = CollectorRegistry()
    sub = ModelSubscriber(
        "127.0.0.1:1", "replay-unit", loader=constant_loader, registry=registry, **trusted
    )
    assert sub.apply(new)
    assert not sub.apply(old)
    assert sub.current_version == new and sub.failures == 1 and sub.healthy
    labels = {"pipeline": "replay-unit", "alias": "champion"}
    refused = registry.get_sample_value(
        "driftline_subscriber_refusals_total", {**labels, "reason": "stale"}
    )
    assert refused == 1
    assert registry.get_sample_value("driftline_subscriber_healthy", labels) == 1
    assert sub.last_error is not None and "stale" in sub.last_error.reason
    assert sub.last_error.code == "stale"
    # A rollback is a new deployment (seq 3) of the old model: served.
    assert sub.apply(rollback)
    assert sub.predict(X).tolist() == [1.0, 1.0]
    # An event of an older release (no seq, signed before the field existed) is older still.
    legacy = signer.sign(event_factory("replay-unit", 5.0))
    assert not sub.apply(legacy)
    assert sub.current_version == rollback


def test_a_slow_consumer_keeps_the_deployment_order_of_events_without_seq(
    trusted: dict[str, Any], signer: ModelVersionSigner, event_factory: Any
) -> None:
    """Events of an older publisher carry no seq: they are ordered by their signed
    ``deployed_at``."""
    first = signer.sign(event_factory("replay-legacy", 1.0))
    time.sleep(0.01)
    second = signer.sign(event_factory("replay-legacy", 2.0))
    sub = ModelSubscriber("127.0.0.1:1", "replay-legacy", loader=constant_loader, **trusted)
    assert sub.apply(second)
    assert not sub.apply(first)
    assert sub.current_version == second
