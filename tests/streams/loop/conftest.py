"""Factories for the loop tests: pipelines with real topics, tiny artifacts, deployment events."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftline.config.settings import Settings
from driftline.lifecycle_store.artifacts import sha256_hex
from driftline.lifecycle_store.store import LifecycleStore
from driftline.schemas import (
    InferenceEvent,
    LabelEvent,
    ModelVersionEvent,
    ModelVersionSigner,
    Topics,
)


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


SIGNER = ModelVersionSigner.generate()
"""The publisher key of every loop test: the retrainer signs with it, subscribers trust it."""


@pytest.fixture
def signer() -> ModelVersionSigner:
    """The tests' publisher key (what the retrainer signs with)."""
    return SIGNER


@pytest.fixture
def trusted(tmp_path: Path) -> dict[str, Any]:
    """Subscriber options trusting the tests' publisher key and the tests' artifact store."""
    return {"verify_keys": [SIGNER.public_key], "artifacts": str(tmp_path)}


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
def produce(kafka_bootstrap: str) -> Callable[..., None]:
    """Send a deployment event to its pipeline's model-versions topic and wait for delivery."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})

    def send(event: ModelVersionEvent, *, sign: bool = True) -> None:
        if sign:
            event = SIGNER.sign(event)
        producer.produce(
            Topics(event.pipeline).model_versions, key=event.key, value=event.to_json()
        )
        assert producer.flush(30) == 0

    return send


# -- a whole pipeline: settings, store, topics, a labelled stream with a concept change -------


class ConceptStream:
    """Labelled rows of four features; ``drifted`` shifts the inputs *and* changes the concept,
    so a model trained before the drift is near chance after it.

    Event ids and timestamps count up across calls, like one long stream.
    """

    features = ("f0", "f1", "f2", "f3")

    def __init__(self, pipeline: str, seed: int = 0) -> None:
        self.pipeline = pipeline
        self.rng = np.random.default_rng(seed)
        self.next_id = 0
        self.t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def sample(self, n: int, drifted: bool) -> tuple[np.ndarray, np.ndarray]:
        x = self.rng.normal(size=(n, 4))
        if drifted:
            x[:, 0] += 1.5
            return x, (x[:, 0] - x[:, 1] > 1.5).astype(int)
        return x, (x[:, 0] + x[:, 1] > 0).astype(int)

    def events(
        self, n: int, drifted: bool
    ) -> tuple[list[InferenceEvent], list[LabelEvent], np.ndarray, np.ndarray]:
        x, y = self.sample(n, drifted)
        inputs, labels = [], []
        for i in range(n):
            k = self.next_id + i
            ts = self.t0 + timedelta(seconds=k)
            inputs.append(
                InferenceEvent(
                    event_id=f"e{k}",
                    timestamp=ts,
                    pipeline=self.pipeline,
                    features={f: float(x[i, j]) for j, f in enumerate(self.features)},
                )
            )
            labels.append(LabelEvent(event_id=f"e{k}", label=int(y[i]), timestamp=ts))
        self.next_id += n
        return inputs, labels, x, y


def write_config(path: Path, values: dict[str, Any], pipeline: dict[str, Any]) -> Path:
    """A driftline.toml: top-level settings plus a [pipeline] table with sub-tables."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines.append("[pipeline]")
    tables = {k: v for k, v in pipeline.items() if isinstance(v, dict)}
    lines += [f"{k} = {json.dumps(v)}" for k, v in pipeline.items() if k not in tables]
    for name, table in tables.items():
        lines.append(f"[pipeline.{name}]")
        for k, v in table.items():
            if isinstance(v, dict):
                inner = ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items())
                lines.append(f"{k} = {{ {inner} }}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


# Small and quick, but a real MLP trained by the real retrainer. min_similarity 0: the
# drifted data always warm-starts from the most similar past lifecycle (the champion's here),
# so the tests see lifecycle transfer however far the drift moved the data.
PIPELINE_TABLE: dict[str, Any] = {
    "bootstrap_rows": 500,
    "detector": {"reference_rows": 500, "ert": 2000},
    "model": {"epochs": 15, "params": {"hidden": [32]}, "min_similarity": 0.0},
    "selection": {"min_labelled_rows": 200},
}


@dataclass
class LoopPipeline:
    """A pipeline with its topics on the real broker, a SQLite store and a config file."""

    settings: Settings
    config_file: Path
    stream: ConceptStream

    @property
    def name(self) -> str:
        return self.settings.pipeline

    def open_store(self) -> LifecycleStore:
        return LifecycleStore.open(
            self.settings.store_url.get_secret_value(), self.settings.artifacts
        )


@pytest.fixture
def loop_pipeline_factory(
    kafka_bootstrap: str, tmp_path: Path
) -> Iterator[Callable[..., LoopPipeline]]:
    """Build :class:`LoopPipeline`s (topics deleted afterwards)."""
    from driftline.streams.kafka.clients import admin_client, ensure_topics

    made: list[Settings] = []

    def make(
        partitions: int = 1, values: dict[str, Any] | None = None, **pipeline_overrides: Any
    ) -> LoopPipeline:
        """``values`` override top-level settings, ``pipeline_overrides`` the [pipeline]."""
        name = f"loop-{uuid.uuid4().hex[:10]}"
        root = tmp_path / name
        root.mkdir()
        # The broker comes from KAFKA_BOOTSTRAP_SERVERS, set whenever kafka_bootstrap is.
        values = {
            "partitions": partitions,
            "store_url": f"sqlite:///{root / 'store.db'}",
            "artifacts": str(root / "artifacts"),
            "state_dir": str(root / "state"),
            "metrics_port": 0,
            "signing_key": SIGNER.private_key_text(),
            **(values or {}),
        }
        table = {"name": name, **PIPELINE_TABLE, **pipeline_overrides}
        config_file = write_config(root / "driftline.toml", values, table)
        settings = Settings.load(config_file)
        ensure_topics(settings)
        made.append(settings)
        return LoopPipeline(settings, config_file, ConceptStream(name))

    yield make
    for settings in made:
        admin = admin_client(settings)
        for future in admin.delete_topics(settings.topics.all()).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., list[Any]]:
    """Every record of a topic: reads until ``quiet_s`` pass without a new one, at least
    ``expect`` records arrived (or ``timeout`` is up)."""
    from confluent_kafka import Consumer

    def read(
        topic: str, *, expect: int = 0, quiet_s: float = 2.0, timeout: float = 30.0
    ) -> list[Any]:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"read-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        found: list[Any] = []
        start = last = time.monotonic()
        while time.monotonic() - start < timeout:
            message = consumer.poll(0.25)
            if message is not None and message.error() is None:
                found.append(message)
                last = time.monotonic()
            elif len(found) >= expect and time.monotonic() - last >= quiet_s:
                break
        consumer.close()
        return found

    return read
