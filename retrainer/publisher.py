"""How deployed model versions and label requests leave the retrainer.

The retrainer never imports Kafka: it hands events to a :class:`Publisher`. The crash-safe
protocol is the store's outbox: the deployment and its message are recorded in one
transaction (``store.deploy(..., outbox=...)``), then published, then marked published.
:func:`flush_outbox` sends whatever a crash left pending; call it at start-up.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from driftline.lifecycle_store.records import Deployment, ModelVersion
from driftline.schemas import LabelRequest, ModelVersionEvent, utcnow

__all__ = ["InMemoryPublisher", "Publisher", "deployment_event", "flush_outbox"]

logger = logging.getLogger(__name__)


def deployment_event(
    deployment: Deployment,
    model: ModelVersion,
    feature_names: Sequence[str],
    *,
    reason: str | None = None,
) -> ModelVersionEvent:
    """The ModelVersionEvent announcing ``deployment`` of ``model``: a pointer to verified
    bytes (artifact URI and sha256), never the bytes. Only finite numeric metrics travel."""
    return ModelVersionEvent(
        pipeline=deployment.pipeline,
        alias=deployment.alias,
        deployment_id=deployment.id,
        model_version_id=model.id,
        artifact_uri=model.artifact_uri,
        content_hash=model.content_hash,
        framework=model.framework,
        feature_names=list(feature_names),
        metrics={
            k: float(v)
            for k, v in model.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        },
        data_version_id=model.data_version_id,
        parent_model_version_id=model.parent_model_version_id,
        reason=deployment.reason if reason is None else reason,
        deployed_at=deployment.deployed_at or utcnow(),
        deployment_seq=deployment.seq,
    )


@runtime_checkable
class Publisher(Protocol):
    """Sends events to consumers; returns only once delivery is confirmed (else raises)."""

    def publish_model_version(self, event: ModelVersionEvent) -> None:
        """Publish a deployed model version (to ``{p}.model-versions``, key ``event.key``)."""
        ...

    def publish_label_request(self, request: LabelRequest) -> None:
        """Publish a request for labels (to ``{p}.label-requests``)."""
        ...


class InMemoryPublisher:
    """Records published events in lists (tests, the embedded runner); thread-safe.

    >>> pub = InMemoryPublisher()
    >>> pub.publish_label_request(LabelRequest(request_id="r1", pipeline="p",
    ...                                        event_ids=["e1"], reason="few labels"))
    >>> [r.request_id for r in pub.label_requests]
    ['r1']
    """

    def __init__(self) -> None:
        self.model_versions: list[ModelVersionEvent] = []
        self.label_requests: list[LabelRequest] = []
        self._lock = threading.Lock()

    def publish_model_version(self, event: ModelVersionEvent) -> None:
        with self._lock:
            self.model_versions.append(event)

    def publish_label_request(self, request: LabelRequest) -> None:
        with self._lock:
            self.label_requests.append(request)


def flush_outbox(store: Any, publisher: Publisher, *, limit: int = 100) -> int:
    """Publish every pending outbox item of ``store`` in order; returns how many were sent.

    Each item is marked published right after its delivery, so a crash re-sends at most one
    item (harmless: the model-versions topic is compacted and events are idempotent). An item
    of an unknown topic is left pending and logged.
    """
    sent = 0
    while True:
        pending = store.pending_outbox(limit=limit)
        done_before = sent
        for item in pending:
            if item.topic.endswith(".model-versions"):
                publisher.publish_model_version(ModelVersionEvent.from_json(item.value))
            elif item.topic.endswith(".label-requests"):
                publisher.publish_label_request(LabelRequest.from_json(item.value))
            else:
                logger.warning(
                    "outbox item %s has topic %r that no publisher handles; left pending",
                    item.id,
                    item.topic,
                )
                continue
            store.mark_published([item.id])
            sent += 1
        if len(pending) < limit or sent == done_before:
            return sent
