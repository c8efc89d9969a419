"""How deployed model versions and label requests leave the retrainer.

The retrainer never imports Kafka: it hands events to a :class:`Publisher`. The crash-safe
protocol is the store's outbox: the deployment and its message are recorded in one
transaction (``store.deploy(..., outbox=...)``), then published, then marked published.
:func:`flush_outbox` sends whatever a crash left pending; call it at start-up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, runtime_checkable

from schemas import LabelRequest, ModelVersionEvent

__all__ = ["InMemoryPublisher", "Publisher", "flush_outbox"]

logger = logging.getLogger(__name__)


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
