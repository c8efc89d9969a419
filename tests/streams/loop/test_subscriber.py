"""ModelSubscriber against the real broker: current champion at once, swaps, failures kept out."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline.schemas import ModelVersionEvent, utcnow
from driftline.streams.sdk.subscriber import ModelSubscriber, ServedModel

pytestmark = pytest.mark.kafka

X = np.zeros((4, 1))


class ConstantModel:
    """A model whose prediction is one number: enough to tell versions apart."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), self.value)


def constant_loader(event: ModelVersionEvent, data: bytes) -> ConstantModel:
    return ConstantModel(json.loads(data)["value"])


class CountingLoader:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def __call__(self, event: ModelVersionEvent, data: bytes) -> ConstantModel:
        self.loaded.append(event.model_version_id)
        return constant_loader(event, data)


def test_new_subscriber_serves_the_current_champion_at_once(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()
    for value in (1.0, 2.0, 3.0):
        produce(event_factory(pipeline, value))
    produce(event_factory(pipeline, 9.0, alias="challenger"))
    loader = CountingLoader()
    with ModelSubscriber(kafka_bootstrap, pipeline, **trusted, loader=loader) as sub:
        assert sub.ready
        assert sub.current_version is not None
        assert sub.current_version.model_version_id == "mv-3"
        np.testing.assert_array_equal(sub.predict(X), np.full(4, 3.0))
    # Superseded deployments and other aliases are never loaded.
    assert loader.loaded == ["mv-3"]


def test_swaps_on_new_deployment_and_calls_back(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()
    produce(event_factory(pipeline, 1.0))
    swaps: list[tuple[str, str | None]] = []

    def on_swap(new: ServedModel, old: ServedModel | None) -> None:
        swaps.append((new.model_version_id, None if old is None else old.model_version_id))

    with ModelSubscriber(
        kafka_bootstrap, pipeline, **trusted, on_swap=on_swap, loader=constant_loader
    ) as sub:
        sub.wait("mv-1", timeout=10)
        second = event_factory(pipeline, 2.0)
        produce(second)
        assert sub.wait(deployment_id=second.deployment_id, timeout=20).model_version_id == "mv-2"
        np.testing.assert_array_equal(sub.predict(X), np.full(4, 2.0))
    assert swaps == [("mv-1", None), ("mv-2", "mv-1")]


@pytest.mark.parametrize("failure", ["hash", "missing", "loader"])
def test_keeps_serving_the_old_model_when_a_new_one_fails(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = pipeline_factory()
    produce(event_factory(pipeline, 1.0))

    def loader(event: ModelVersionEvent, data: bytes) -> ConstantModel:
        if failure == "loader" and event.model_version_id == "mv-2":
            raise ValueError("unsupported weights layout")
        return constant_loader(event, data)

    with ModelSubscriber(kafka_bootstrap, pipeline, **trusted, loader=loader) as sub:
        sub.wait("mv-1", timeout=10)
        bad = event_factory(pipeline, 2.0)
        if failure == "hash":
            bad = bad.model_copy(update={"content_hash": "f" * 64})
        elif failure == "missing":
            Path(bad.artifact_uri.removeprefix("file://")).unlink()
        produce(bad)
        good = event_factory(pipeline, 3.0)
        produce(good)
        sub.wait("mv-3", timeout=20)
        assert sub.failures == 1
        assert sub.last_error is not None
        assert sub.last_error.event is not None
        assert sub.last_error.event.model_version_id == "mv-2"
        expected = {"hash": "sha256", "missing": "does not exist", "loader": "weights layout"}
        assert expected[failure] in sub.last_error.reason
    assert any("keeping model version mv-1" in r.getMessage() for r in caplog.records)


def test_start_up_falls_back_to_the_newest_loadable_deployment(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()
    produce(event_factory(pipeline, 1.0))
    produce(event_factory(pipeline, 2.0).model_copy(update={"content_hash": "0" * 64}))
    with ModelSubscriber(kafka_bootstrap, pipeline, **trusted, loader=constant_loader) as sub:
        assert sub.current_version is not None
        assert sub.current_version.model_version_id == "mv-1"
        assert sub.failures == 1


def test_in_flight_prediction_finishes_on_the_old_model(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()
    entered, release = threading.Event(), threading.Event()

    class SlowModel(ConstantModel):
        def predict(self, x: Any) -> np.ndarray:
            entered.set()
            release.wait(20)
            return super().predict(x)

    def loader(event: ModelVersionEvent, data: bytes) -> ConstantModel:
        model = constant_loader(event, data)
        return SlowModel(model.value) if model.value == 1.0 else model

    produce(event_factory(pipeline, 1.0))
    with ModelSubscriber(kafka_bootstrap, pipeline, **trusted, loader=loader) as sub:
        sub.wait("mv-1", timeout=10)
        result: list[np.ndarray] = []
        worker = threading.Thread(target=lambda: result.append(sub.predict(X)))
        worker.start()
        assert entered.wait(10)
        produce(event_factory(pipeline, 2.0))
        sub.wait("mv-2", timeout=20)
        np.testing.assert_array_equal(sub.predict(X), np.full(4, 2.0))
        release.set()
        worker.join(10)
    np.testing.assert_array_equal(result[0], np.full(4, 1.0))


def test_rollback_to_known_bytes_swaps_without_reloading(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()
    first = event_factory(pipeline, 1.0)
    produce(first)
    loader = CountingLoader()
    with ModelSubscriber(kafka_bootstrap, pipeline, **trusted, loader=loader) as sub:
        sub.wait("mv-1", timeout=10)
        # A rollback is a new, later entry of the alias's history (seq and time).
        redeploy = first.model_copy(
            update={"deployment_id": "again", "reason": "rollback", "deployed_at": utcnow()}
        )
        produce(redeploy)
        assert sub.wait(deployment_id="again", timeout=20).reason == "rollback"
        assert sub.swaps == 2
    assert loader.loaded == ["mv-1"]


def test_asyncio_helpers(
    trusted: dict[str, Any],
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()

    async def main() -> tuple[str, str]:
        async with ModelSubscriber(
            kafka_bootstrap, pipeline, **trusted, loader=constant_loader
        ) as sub:
            with pytest.raises(TimeoutError, match="serving nothing"):
                await sub.wait_for_version(timeout=0.3)
            await asyncio.to_thread(produce, event_factory(pipeline, 4.0))
            first = await sub.wait_for_version(timeout=20)
            await asyncio.to_thread(produce, event_factory(pipeline, 5.0))
            second = await sub.wait_for_version("mv-5", timeout=20)
            return first.model_version_id, second.model_version_id

    assert asyncio.run(main()) == ("mv-4", "mv-5")


def test_a_subscriber_started_before_the_topic_exists_is_ready_with_no_model(
    trusted: dict[str, Any], kafka_bootstrap: str, event_factory: Any
) -> None:
    sub = ModelSubscriber(
        kafka_bootstrap, f"loop-absent-{uuid.uuid4().hex[:8]}", loader=constant_loader, **trusted
    )
    sub.start()
    try:
        # Nothing is deployed yet: the start-up read is over at once (`with` does not wait
        # its 30 s), and the model says there is none.
        assert sub.wait_until_ready(timeout=15)
        with pytest.raises(LookupError, match="no model deployed"):
            sub.predict(X)
    finally:
        sub.stop()
