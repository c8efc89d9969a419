"""KafkaPublisher: confirmed delivery, the right topic and key, a clear error otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from driftline.config.settings import Settings
from driftline.errors import ConfigError
from driftline.retrainer.publisher import Publisher
from driftline.schemas import (
    LabelRequest,
    ModelVersionEvent,
    ModelVersionSigner,
    ModelVersionVerifier,
)
from driftline.streams.kafka.publisher import KafkaPublisher, PublishError


@pytest.mark.kafka
def test_publishes_to_the_pipeline_topics_with_keys_and_content_type(
    loop_pipeline_factory: Any, event_factory: Any, read_topic: Any, signer: ModelVersionSigner
) -> None:
    lp = loop_pipeline_factory()
    publisher = KafkaPublisher(lp.settings)
    assert isinstance(publisher, Publisher)
    event: ModelVersionEvent = event_factory(lp.name, 1.0)
    request = LabelRequest(
        request_id="r-1", pipeline=lp.name, event_ids=["e1", "e2"], reason="few labels"
    )
    publisher.publish_model_version(event)
    publisher.publish_label_request(request)
    publisher.close()
    assert publisher.published == 2
    [versions] = read_topic(lp.settings.topics.model_versions, expect=1)
    assert versions.key() == f"{lp.name}/champion".encode()
    published = ModelVersionEvent.from_json(versions.value())
    ModelVersionVerifier([signer.public_key]).verify(published)  # signed with the settings' key
    assert published.model_copy(update={"signature": None, "key_id": None}) == event
    assert dict(versions.headers())["content-type"] == b"application/json"
    [requests] = read_topic(lp.settings.topics.label_requests, expect=1)
    assert requests.key() == lp.name.encode()
    assert LabelRequest.from_json(requests.value()) == request


def test_an_unreachable_broker_raises_publish_error(
    event_factory: Any, signer: ModelVersionSigner
) -> None:
    settings = Settings(
        pipeline="fraud",
        kafka_bootstrap_servers="127.0.0.1:1",
        signing_key=signer.private_key_text(),
    )
    publisher = KafkaPublisher(settings, delivery_timeout_s=1.0)
    with pytest.raises(PublishError, match=r"not confirmed by the broker at 127\.0\.0\.1:1"):
        publisher.publish_model_version(event_factory("fraud", 1.0))
    assert publisher.published == 0


def test_model_versions_are_never_published_unsigned(event_factory: Any) -> None:
    publisher = KafkaPublisher(Settings(pipeline="fraud", kafka_bootstrap_servers="127.0.0.1:1"))
    with pytest.raises(ConfigError, match="DRIFTLINE_SIGNING_KEY"):
        publisher.publish_model_version(event_factory("fraud", 1.0))
    assert publisher.published == 0


def test_delivery_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="delivery_timeout_s must be > 0, got 0"):
        KafkaPublisher(Settings(pipeline="fraud"), delivery_timeout_s=0)
