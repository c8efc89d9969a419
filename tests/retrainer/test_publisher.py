from __future__ import annotations

import pytest

from driftline.lifecycle_store import OutboxMessage
from driftline.retrainer.publisher import InMemoryPublisher, Publisher, flush_outbox
from driftline.schemas import LabelRequest, ModelVersionEvent, Topics


def model_event(n: int) -> ModelVersionEvent:
    return ModelVersionEvent(
        pipeline="pub",
        deployment_id=f"dp-{n}",
        model_version_id=f"mv-{n}",
        artifact_uri="file:///m",
        content_hash="0" * 64,
        framework="torch-mlp",
        feature_names=["a"],
    )


class Flaky:
    """Fails after ``ok`` deliveries, like a broker going away."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.inner = InMemoryPublisher()

    def publish_model_version(self, event: ModelVersionEvent) -> None:
        if len(self.inner.model_versions) >= self.ok:
            raise ConnectionError("broker unreachable")
        self.inner.publish_model_version(event)

    def publish_label_request(self, request: LabelRequest) -> None:
        self.inner.publish_label_request(request)


def test_flush_publishes_in_order_and_survives_a_crash(store) -> None:  # type: ignore[no-untyped-def]
    store.ensure_pipeline("pub", ["a"], {})
    topics = Topics("pub")
    for n in range(3):
        e = model_event(n)
        store.enqueue(OutboxMessage(topics.model_versions, e.key, e.to_json()))
    req = LabelRequest(request_id="r", pipeline="pub", event_ids=["e1"], reason="few labels")
    store.enqueue(OutboxMessage(topics.label_requests, b"pub", req.to_json()))
    store.enqueue(OutboxMessage("pub.unknown", None, b"{}"))

    flaky = Flaky(ok=2)
    assert isinstance(flaky, Publisher)
    with pytest.raises(ConnectionError):
        flush_outbox(store, flaky)
    # What was delivered is marked; the rest waits for the next flush.
    assert [e.model_version_id for e in flaky.inner.model_versions] == ["mv-0", "mv-1"]
    assert len(store.pending_outbox()) == 3

    pub = InMemoryPublisher()
    assert flush_outbox(store, pub, limit=1) == 2
    assert [e.model_version_id for e in pub.model_versions] == ["mv-2"]
    assert pub.label_requests == [req]
    # Only the item no publisher handles stays pending; flushing again sends nothing.
    assert [i.topic for i in store.pending_outbox()] == ["pub.unknown"]
    assert flush_outbox(store, pub) == 0
