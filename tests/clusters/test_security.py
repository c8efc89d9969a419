"""Every driftline Kafka client over TLS and SASL, against a real broker that allows nothing
else (SASL_SSL with PLAIN and SCRAM, mutual TLS, SASL_PLAINTEXT)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition

from driftline.config.settings import KafkaSecurity, Settings
from driftline.errors import ConfigError
from driftline.streams.kafka.clients import ensure_topics, make_consumer, make_producer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _settings(bootstrap: str, **security: Any) -> Settings:
    return Settings(
        pipeline=f"sec-{uuid.uuid4().hex[:8]}",
        kafka_bootstrap_servers=bootstrap,
        kafka_security=KafkaSecurity(**security),
    )


def _roundtrip(settings: Settings) -> None:
    created = ensure_topics(settings, timeout=20)
    assert settings.topics.inputs in created
    producer = make_producer(settings)
    producer.produce(settings.topics.inputs, b'{"x": 1}', key=b"k")
    assert producer.flush(20) == 0
    consumer = make_consumer(settings, f"g-{uuid.uuid4().hex}")
    consumer.subscribe([settings.topics.inputs])
    try:
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                assert message.value() == b'{"x": 1}'
                return
        pytest.fail("the message produced over the secured listener never came back")
    finally:
        consumer.close()


def _sasl_ssl(secure_broker: dict[str, str], mechanism: str = "SCRAM-SHA-512") -> Settings:
    return _settings(
        secure_broker["KAFKA_SASL_SSL"],
        protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username=secure_broker["KAFKA_USER"],
        sasl_password=secure_broker["KAFKA_PASSWORD"],
        ssl_ca_location=secure_broker["KAFKA_CA"],
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_sasl_ssl(secure_broker: dict[str, str], mechanism: str) -> None:
    _roundtrip(_sasl_ssl(secure_broker, mechanism))


def test_mutual_tls_with_an_encrypted_key(secure_broker: dict[str, str]) -> None:
    _roundtrip(
        _settings(
            secure_broker["KAFKA_SSL"],
            protocol="SSL",
            ssl_ca_location=secure_broker["KAFKA_CA"],
            ssl_certificate_location=secure_broker["KAFKA_CLIENT_CERT"],
            ssl_key_location=secure_broker["KAFKA_CLIENT_KEY_ENCRYPTED"],
            ssl_key_password=secure_broker["KAFKA_CLIENT_KEY_PASSWORD"],
        )
    )


def test_sasl_plaintext(secure_broker: dict[str, str]) -> None:
    _roundtrip(
        _settings(
            secure_broker["KAFKA_SASL_PLAINTEXT"],
            protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username=secure_broker["KAFKA_USER"],
            sasl_password=secure_broker["KAFKA_PASSWORD"],
        )
    )


def test_a_wrong_password_is_refused(secure_broker: dict[str, str]) -> None:
    settings = _settings(
        secure_broker["KAFKA_SASL_SSL"],
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=secure_broker["KAFKA_USER"],
        sasl_password="not-the-password",
        ssl_ca_location=secure_broker["KAFKA_CA"],
    )
    with pytest.raises(KafkaException):
        ensure_topics(settings, timeout=5)


def test_plaintext_is_refused_by_the_secured_broker(secure_broker: dict[str, str]) -> None:
    with pytest.raises(KafkaException):
        ensure_topics(_settings(secure_broker["KAFKA_SASL_SSL"]), timeout=5)


def test_environment_and_errors_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY__PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY__SASL_USERNAME", "svc")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY__SASL_PASSWORD", "hunter2-secret")
    settings = Settings.load(None, pipeline="p")
    config = settings.kafka_security.librdkafka_config()
    assert config["sasl.password"] == "hunter2-secret"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert "hunter2" not in repr(settings)
    monkeypatch.delenv("DRIFTLINE_KAFKA_SECURITY__SASL_USERNAME")
    with pytest.raises(ConfigError) as info:
        Settings.load(None, pipeline="p")
    assert "sasl_username" in str(info.value) and "hunter2" not in str(info.value)


def test_faust_worker_credentials_reach_the_secured_broker(secure_broker: dict[str, str]) -> None:
    """The Faust worker talks through aiokafka with `faust_credentials`; prove those connect."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from driftline.streams.kafka.clients import faust_credentials

    settings = _sasl_ssl(secure_broker)
    ensure_topics(settings, timeout=20)
    auth = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert auth["security_protocol"] == "SASL_SSL"

    async def roundtrip() -> bytes | None:
        servers = settings.kafka_bootstrap_servers
        producer = AIOKafkaProducer(bootstrap_servers=servers, **auth)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topics.inputs, b"faust")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            settings.topics.inputs,
            bootstrap_servers=servers,
            auto_offset_reset="earliest",
            **auth,
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
            return record.value
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == b"faust"


def test_the_worker_batch_reader_reads_and_commits_over_sasl_ssl(
    secure_broker: dict[str, str],
) -> None:
    """The worker's `BatchReader` (librdkafka, manual assignment, its own group's commits)
    uses the same ``kafka_security`` block as every other client."""
    import asyncio

    from driftline.streams.kafka.app import app_id
    from driftline.streams.kafka.faust_batches import reader_group
    from tests.kafka.test_faust_batches import _App, _reader

    settings = _sasl_ssl(secure_broker)
    settings = settings.model_copy(update={"partitions": 2})
    ensure_topics(settings, timeout=20)
    producer = make_producer(settings)
    producer.produce(settings.topics.inputs, b"secured", partition=1)
    assert producer.flush(20) == 0
    group = reader_group(app_id(settings.pipeline))
    app = _App()
    reader = _reader(settings, app, group)

    async def main() -> bytes:
        await reader.on_start()
        try:
            await app.assign({0, 1})
            async with asyncio.timeout(30):
                async for batch in reader.batches(settings.topics.inputs):
                    await reader.commit({(batch.topic, batch.partition): 1})
                    return bytes(batch.messages[0].value)
        finally:
            await reader.on_stop()
        raise AssertionError("unreachable")

    assert asyncio.run(main()) == b"secured"
    consumer = make_consumer(settings, group)
    try:
        (tp,) = consumer.committed([TopicPartition(settings.topics.inputs, 1)], timeout=20)
    finally:
        consumer.close()
    assert tp.offset == 1
