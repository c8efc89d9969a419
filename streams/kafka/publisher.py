"""KafkaPublisher: the retrainer's publisher interface on a real Kafka cluster.

Why an outbox and not a Kafka transaction. A deployment must be both recorded in the
lifecycle store and published on ``{p}.model-versions``; a crash between the two must leave
neither a published version the store does not know nor a recorded deployment that is never
published. A transactional producer makes *Kafka* writes atomic with *Kafka* offset commits,
but the store is a database: there is no two-phase commit between the two, so a transaction
would still leave a window between "database committed" and "Kafka committed". The store
instead writes the deployment and its ModelVersionEvent (an outbox row) in one database
transaction. This publisher then sends pending outbox rows and marks them published only
after the broker confirmed them (``acks=all``):

* crash before the database commit: nothing recorded, nothing published;
* crash after the commit, before or during publishing: the row is still pending and is sent
  when the retrainer service starts again (it flushes the outbox on start-up and after every
  deployment);
* crash after publishing, before marking: the same event is sent again. That is harmless:
  the topic is compacted and keyed ``{p}/{alias}``, the record is identical (same
  ``deployment_id``), and subscribers ignore a deployment they already applied.

So every recorded deployment is published at least once and nothing is published that was
not recorded first. The producer is idempotent, so broker retries add no duplicates either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from driftline.schemas import (
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    LabelRequest,
    ModelVersionEvent,
    Topics,
)
from driftline.streams.exceptions import ConfigError, StreamsError

if TYPE_CHECKING:
    from driftline.config.settings import Settings

__all__ = ["KafkaPublisher", "PublishError"]

log = logging.getLogger(__name__)


class PublishError(StreamsError):
    """The broker did not confirm a record; nothing is marked published."""


class KafkaPublisher:
    """Publish model versions and label requests of ``settings.pipeline``; every call returns
    only once the broker confirmed the record (raises :class:`PublishError` otherwise).

    >>> from driftline.config.settings import Settings
    >>> publisher = KafkaPublisher(Settings(pipeline="fraud"))
    >>> publisher.topics.model_versions
    'fraud.model-versions'
    >>> publisher.close()
    """

    def __init__(self, settings: Settings, *, delivery_timeout_s: float = 30.0) -> None:
        if delivery_timeout_s <= 0:
            raise ValueError(f"delivery_timeout_s must be > 0, got {delivery_timeout_s}")
        from driftline.streams.kafka.clients import make_producer

        self.settings = settings
        self.topics = settings.topics
        self._signer = settings.model_version_signer()
        self.delivery_timeout_s = delivery_timeout_s
        # make_producer is acks=all and idempotent: confirmed means on every in-sync replica.
        self._producer = make_producer(settings, delivery_timeout_ms=int(delivery_timeout_s * 1000))
        # confluent-kafka producers are thread-safe, but flush() waits for *all* records:
        # one publish at a time keeps each call's confirmation its own.
        self._lock = threading.Lock()
        self.published = 0

    def publish_model_version(self, event: ModelVersionEvent) -> None:
        """Sign a deployment and send it to the compacted ``{p}.model-versions``, keyed
        ``{p}/{alias}``.

        The topic follows the event's pipeline: one store may hold several pipelines, and
        the outbox is flushed for all of them.
        """
        if self._signer is None:
            raise ConfigError(
                "model versions must be signed: set DRIFTLINE_SIGNING_KEY (or signing_key in "
                "the config file) to the key `driftline keys generate` prints; the outbox item "
                "stays pending until then"
            )
        signed = self._signer.sign(event)
        self.publish(Topics(event.pipeline).model_versions, signed.key, signed.to_json())

    def publish_label_request(self, request: LabelRequest) -> None:
        """Send a request for labels to ``{p}.label-requests``, keyed by pipeline."""
        topic = Topics(request.pipeline).label_requests
        self.publish(topic, request.pipeline.encode(), request.to_json())

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send one JSON record and wait for the broker's confirmation."""
        self.publish_many([(topic, key, value)])

    def publish_many(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
        """Send records in order and wait until the broker confirmed every one of them.

        Returns how many were sent; raises :class:`PublishError` naming the first failure.
        """
        errors: list[str] = []

        def delivered(err: Any, message: Any) -> None:
            if err is not None:
                errors.append(f"{message.topic()}: {err}")

        with self._lock:
            count = 0
            for topic, key, value in records:
                self._producer.produce(
                    topic,
                    key=key,
                    value=value,
                    headers=[(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())],
                    on_delivery=delivered,
                )
                count += 1
                self._producer.poll(0)
            remaining = self._producer.flush(self.delivery_timeout_s)
        if remaining or errors:
            cause = f" ({errors[0]})" if errors else ""
            raise PublishError(
                f"{remaining + len(errors)} record(s) not confirmed by the broker at "
                f"{self.settings.kafka_bootstrap_servers} within {self.delivery_timeout_s}s"
                f"{cause}; check that the broker is up and the topic exists (outbox items "
                "stay pending and are retried)"
            )
        self.published += count
        return count

    def close(self) -> None:
        """Wait for anything still in flight (nothing, after a successful publish)."""
        self._producer.flush(self.delivery_timeout_s)
