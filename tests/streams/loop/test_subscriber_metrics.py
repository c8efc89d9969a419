"""ModelSubscriber metrics (issue 13.1, 13.9): every refusal is a logged reason, a metric and
the old model kept; a subscriber that cannot serve the newest deployment is visibly degraded.

The deployments go through `ModelSubscriber.apply`, what the subscriber's thread calls for
each record; the broker path is covered by the subscriber and the S3 loop tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from driftline.schemas import ModelVersionEvent
from driftline.streams.sdk.subscriber import ModelSubscriber
from tests.streams.loop.conftest import SIGNER

PIPELINE = "metrics-p"


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: Any) -> list[float]:
        return [self.value] * len(x)


def load(event: ModelVersionEvent, data: bytes) -> Constant:
    return Constant(json.loads(data)["value"])


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"pipeline": PIPELINE, "alias": "champion", **labels})


def subscriber(trusted: dict[str, Any], registry: CollectorRegistry | None) -> ModelSubscriber:
    return ModelSubscriber("127.0.0.1:1", PIPELINE, loader=load, registry=registry, **trusted)


def test_a_fresh_subscriber_whose_champion_fails_its_hash_is_degraded(
    trusted: dict[str, Any], event_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    sub = subscriber(trusted, registry)
    assert value(registry, "driftline_subscriber_healthy") == 1.0
    bad = SIGNER.sign(event_factory(PIPELINE, 1.0).model_copy(update={"content_hash": "0" * 64}))
    assert not sub.apply(bad)
    assert not sub.healthy and sub.current_version is None
    assert sub.last_error is not None and sub.last_error.code == "hash_mismatch"
    assert value(registry, "driftline_subscriber_healthy") == 0.0
    assert value(registry, "driftline_subscriber_refusals_total", reason="hash_mismatch") == 1.0
    assert value(registry, "driftline_subscriber_swaps_total") == 0.0
    assert "driftline_subscriber_model_info" not in {
        s.name for f in registry.collect() for s in f.samples
    }
    assert any("sha256" in r.getMessage() and "no model" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("code", "forge"),
    [
        ("unsigned", lambda e: e),
        ("bad_signature", lambda e: SIGNER.sign(e).model_copy(update={"model_version_id": "x"})),
        (
            "outside_store",
            lambda e: SIGNER.sign(e.model_copy(update={"artifact_uri": "file:///etc/passwd"})),
        ),
    ],
)
def test_a_refused_event_is_a_logged_reason_a_metric_and_the_old_model_kept(
    trusted: dict[str, Any],
    event_factory: Any,
    caplog: pytest.LogCaptureFixture,
    code: str,
    forge: Any,
) -> None:
    registry = CollectorRegistry()
    sub = subscriber(trusted, registry)
    first = SIGNER.sign(event_factory(PIPELINE, 1.0))
    assert sub.apply(first)
    info = {"model_version_id": "mv-1", "deployment_id": first.deployment_id}
    assert value(registry, "driftline_subscriber_model_info", **info) == 1.0
    assert not sub.apply(forge(event_factory(PIPELINE, 2.0)))
    assert sub.predict([0]) == [1.0] and sub.last_error is not None
    assert (
        sub.last_error.code == code
        and code in caplog.text
        and "keeping model version mv-1" in caplog.text
    )
    assert value(registry, "driftline_subscriber_refusals_total", reason=code) == 1.0
    assert value(registry, "driftline_subscriber_healthy") == 0.0
    assert value(registry, "driftline_subscriber_model_info", **info) == 1.0  # still mv-1
    # A good deployment heals it, and the info series moves to the new version.
    second = SIGNER.sign(event_factory(PIPELINE, 3.0))
    assert sub.apply(second)
    assert value(registry, "driftline_subscriber_healthy") == 1.0
    assert value(registry, "driftline_subscriber_swaps_total") == 2.0
    assert value(registry, "driftline_subscriber_model_info", **info) is None
    assert (
        value(
            registry,
            "driftline_subscriber_model_info",
            model_version_id="mv-3",
            deployment_id=second.deployment_id,
        )
        == 1.0
    )


def test_many_subscribers_share_one_registry_and_metrics_can_be_off(
    trusted: dict[str, Any], event_factory: Any
) -> None:
    # The default is prometheus_client's global registry: a service builds as many as it needs.
    for _ in range(3):
        ModelSubscriber("127.0.0.1:1", PIPELINE, loader=load, **trusted)
    assert (
        REGISTRY.get_sample_value(
            "driftline_subscriber_healthy", {"pipeline": PIPELINE, "alias": "champion"}
        )
        == 1.0
    )
    registry = CollectorRegistry()
    subscriber(trusted, registry)
    ModelSubscriber(
        "127.0.0.1:1", PIPELINE, "challenger", loader=load, registry=registry, **trusted
    )
    assert (
        registry.get_sample_value(
            "driftline_subscriber_healthy", {"pipeline": PIPELINE, "alias": "challenger"}
        )
        == 1.0
    )
    off = subscriber(trusted, None)
    assert off.apply(SIGNER.sign(event_factory(PIPELINE, 1.0)))
