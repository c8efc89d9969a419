"""Factories for the loop tests: pipelines with real topics, tiny artifacts, deployment events."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle_store.artifacts import sha256_hex
from schemas import ModelVersionEvent, Topics


@pytest.fixture
def pipeline_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """A pipeline name with its model-versions topic created (compacted), deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(partitions: int = 1, topics: tuple[str, ...] = ("model_versions",)) -> str:
        pipeline = f"loop-{uuid.uuid4().hex[:10]}"
        names = Topics(pipeline)
        new = []
        for attr in topics:
            name = getattr(names, attr)
            config = {"cleanup.policy": "compact"} if attr == "model_versions" else {}
            new.append(
                NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)
            )
        for future in admin.create_topics(new).values():
            future.result(timeout=30)
        created.extend(t.topic for t in new)
        return pipeline

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):  # already gone is fine at teardown
                future.result(timeout=30)


@pytest.fixture
def artifact_factory(tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """Write a ConstantModel artifact; returns (uri, sha256)."""

    def make(value: float) -> tuple[str, str]:
        data = json.dumps({"value": value}).encode()
        path = tmp_path / f"model-{uuid.uuid4().hex[:8]}.json"
        path.write_bytes(data)
        return path.as_uri(), sha256_hex(data)

    return make


@pytest.fixture
def event_factory(
    artifact_factory: Callable[..., tuple[str, str]],
) -> Callable[..., ModelVersionEvent]:
    """A ModelVersionEvent pointing at a fresh ConstantModel artifact."""

    def make(
        pipeline: str, value: float, alias: str = "champion", **fields: Any
    ) -> ModelVersionEvent:
        uri, digest = artifact_factory(value)
        defaults: dict[str, Any] = {
            "pipeline": pipeline,
            "alias": alias,
            "deployment_id": uuid.uuid4().hex,
            "model_version_id": f"mv-{value:g}",
            "artifact_uri": uri,
            "content_hash": digest,
            "framework": "constant",
            "feature_names": ["x"],
        }
        defaults.update(fields)
        return ModelVersionEvent(**defaults)

    return make


@pytest.fixture
def produce(kafka_bootstrap: str) -> Callable[[ModelVersionEvent], None]:
    """Send a deployment event to its pipeline's model-versions topic and wait for delivery."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})

    def send(event: ModelVersionEvent) -> None:
        producer.produce(
            Topics(event.pipeline).model_versions, key=event.key, value=event.to_json()
        )
        assert producer.flush(30) == 0

    return send
