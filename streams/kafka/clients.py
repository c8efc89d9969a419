"""Kafka clients configured from `Settings`: confluent-kafka producers, consumers and admin
clients, the Faust worker's credentials, topic creation, conversion.

Every client driftline builds starts from `client_config` — the brokers plus the
``kafka_security`` block (TLS, SASL) — so a secured cluster needs its settings written once.

Config keys of ``overrides`` are librdkafka keys; underscores may stand for dots so they can
be passed as keyword arguments (``linger_ms=50`` is ``linger.ms=50``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.config.settings import Settings
from driftline.streams.monitor.messages import RawMessage

__all__ = [
    "DLQ_MAX_MESSAGE_BYTES",
    "admin_client",
    "client_config",
    "ensure_topics",
    "faust_credentials",
    "make_consumer",
    "make_producer",
    "to_raw_message",
]

# A dead letter carries the rejected message base64-encoded (4/3 larger) plus metadata, so the
# DLQ topic must accept more than the largest input message.
DLQ_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def client_config(settings: Settings) -> dict[str, Any]:
    """The brokers and the security properties every librdkafka client of ``settings`` needs.

    >>> from driftline.config.settings import KafkaSecurity
    >>> s = Settings(pipeline="p", kafka_security=KafkaSecurity(protocol="SASL_PLAINTEXT",
    ...     sasl_mechanism="PLAIN", sasl_username="u", sasl_password="pw"))
    >>> sorted(client_config(s))
    ['bootstrap.servers', 'sasl.mechanism', 'sasl.password', 'sasl.username', 'security.protocol']
    """
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **settings.kafka_security.librdkafka_config(),
    }


def faust_credentials(settings: Settings) -> Any:
    """The ``broker_credentials`` of the Faust app (aiokafka underneath); None for PLAINTEXT."""
    import faust

    security = settings.kafka_security
    context = security.ssl_context()
    if security.uses_sasl:
        assert security.sasl_username is not None and security.sasl_password is not None
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _config(settings: Settings, base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = client_config(settings)
    out.update(base)
    out.update({key.replace("_", "."): value for key, value in overrides.items()})
    return out


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """A durable producer: acks from all replicas, idempotent (no duplicates on retry)."""
    return Producer(
        _config(
            settings,
            {
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.max.bytes": DLQ_MAX_MESSAGE_BYTES,
            },
            overrides,
        )
    )


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in ``group_id`` that starts from the earliest offset and commits manually."""
    return Consumer(
        _config(
            settings,
            {
                "group.id": group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.max.bytes": max(52428800, DLQ_MAX_MESSAGE_BYTES),
                "max.partition.fetch.bytes": max(1048576, settings.max_message_bytes * 2),
            },
            overrides,
        )
    )


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    """An admin client for the pipeline's cluster."""
    return AdminClient(_config(settings, {}, overrides))


def ensure_topics(
    settings: Settings,
    timeout: float = 30.0,
    extra: Mapping[str, tuple[int, dict[str, str]]] | None = None,
) -> list[str]:
    """Create every topic of the pipeline that does not exist yet; return the ones created.

    All get ``settings.partitions`` partitions but ``{p}.detector-summaries``, which has one
    (so one worker of the group owns the pooled drift chart); ``{p}.model-versions`` is
    compacted (its last record per key is the deployed model of an alias) and ``{p}.dlq``
    accepts messages large enough to carry any rejected input. ``extra`` maps more topics to
    their ``(partitions, config)`` (the worker's table changelogs, created up front so the
    group's first assignment sees them).
    """
    topics = settings.topics
    special: dict[str, dict[str, str]] = {
        topics.model_versions: {"cleanup.policy": "compact"},
        topics.dlq: {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
    }
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        # replication -1: the cluster's default.replication.factor, right for any cluster size
        NewTopic(
            name,
            num_partitions=1 if name == topics.detector_summaries else settings.partitions,
            config=special.get(name, {}),
        )
        for name in topics.all()
        if name not in existing
    ]
    wanted += [
        NewTopic(name, num_partitions=count, config=config)
        for name, (count, config) in (extra or {}).items()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except Exception as exc:
            error = exc.args[0] if exc.args else None
            if not (
                isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
            ):
                raise
    return created


def to_raw_message(message: Message) -> RawMessage:
    """Convert a confluent-kafka message (not an error event) to a `RawMessage`."""
    kind, millis = message.timestamp()
    headers: list[tuple[str, bytes | None]] = message.headers() or []  # type: ignore[assignment]
    return RawMessage(
        value=message.value() or b"",
        key=message.key(),
        headers=tuple((k, v if v is not None else b"") for k, v in headers),
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=None
        if kind == TIMESTAMP_NOT_AVAILABLE
        else datetime.fromtimestamp(millis / 1000, tz=UTC),
    )
