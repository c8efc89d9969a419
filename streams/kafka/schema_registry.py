"""Driftline's own event schemas in a Schema Registry: ``driftline schemas register``.

Each topic of a pipeline carries one event type whose JSON Schema ships in
``driftline/schemas/json/``; `register_schemas` registers it as a JSON Schema under the
subject ``{topic}-value`` (the default topic-name strategy of Confluent serializers), so
tools that browse the registry, and consumers that validate with it, see driftline's
contracts. Registering is idempotent: the registry answers an identical schema with the id it
already has, so running it again changes nothing.

>>> [(s.subject, s.schema_name) for s in subjects(Topics("fraud"))][:2]
[('fraud.inputs-value', 'inference_event'), ('fraud.labels-value', 'label_event')]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from driftline.config.settings import SchemaRegistry
from driftline.schemas import Topics, load_json_schema
from driftline.streams.exceptions import StreamsError

__all__ = ["Registered", "Subject", "WireEncoder", "register_schemas", "subjects"]


@dataclass(frozen=True)
class Subject:
    """One registry subject and the shipped schema that belongs under it."""

    subject: str
    schema_name: str


@dataclass(frozen=True)
class Registered:
    """What the registry answered for one subject."""

    subject: str
    schema_name: str
    schema_id: int
    version: int


def subjects(topics: Topics) -> list[Subject]:
    """The subjects of a pipeline's topics (the Arrow batches on ``{p}.inputs`` have no
    registry form: only the JSON event is registered there)."""
    pairs = [
        (topics.inputs, "inference_event"),
        (topics.labels, "label_event"),
        (topics.drift, "drift_event"),
        (topics.model_versions, "model_version_event"),
        (topics.dlq, "dead_letter"),
        (topics.ood, "ood_flag"),
        (topics.label_requests, "label_request"),
    ]
    return [Subject(f"{topic}-value", name) for topic, name in pairs]


def register_schemas(
    settings: SchemaRegistry, topics: Topics, *, client: Any = None
) -> list[Registered]:
    """Register every subject of ``topics`` at the registry of ``settings`` (idempotent).

    Raises `StreamsError` naming the subject when the registry refuses or cannot be reached.
    """
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = client or SchemaRegistryClient(settings.client_config())
    out = []
    for item in subjects(topics):
        text = json.dumps(load_json_schema(item.schema_name), sort_keys=True)
        schema = Schema(text, schema_type="JSON")
        try:
            schema_id = client.register_schema(item.subject, schema)
            version = client.lookup_schema(item.subject, schema).version
        except Exception as exc:
            raise StreamsError(
                f"registering {item.subject} at {settings.url} failed: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from None
        out.append(Registered(item.subject, item.schema_name, schema_id, version))
    return out


class WireEncoder:
    """Encodes driftline's own events in the Confluent wire format with their JSON Schema,
    registered under ``{topic}-value`` on first use (what ``driftline replay --format
    registry-json`` sends; `register_schemas` registers the same schemas).

    The serializer does not validate each document against the schema: driftline builds
    them from its own contract, and validation costs ~10x the encoding.
    """

    def __init__(self, settings: SchemaRegistry, *, client: Any = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.client = client or SchemaRegistryClient(settings.client_config())
        self.url = settings.url
        self._serializers: dict[str, Any] = {}

    def encode(self, topic: str, schema_name: str, doc: dict[str, Any]) -> bytes:
        """``doc`` (an event of ``schema_name``) as wire-format bytes for ``topic``."""
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        serializer = self._serializers.get(topic)
        if serializer is None:
            text = json.dumps(load_json_schema(schema_name), sort_keys=True)
            serializer = JSONSerializer(text, self.client, conf={"validate": False})
            self._serializers[topic] = serializer
        try:
            value: bytes = serializer(doc, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:
            raise StreamsError(
                f"encoding for {topic} with the schema registry at {self.url} failed: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from None
        return value
