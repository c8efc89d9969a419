"""Day-one proof of the Kafka path: confluent-kafka → Faust agent → Faust producer →
confluent-kafka, against the real broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

pytestmark = pytest.mark.kafka

APP = Path(__file__).with_name("echo_app.py")


def free_port() -> int:
    """A loopback port nobody listens on (Faust's worker binds its web port even when off)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def consume(
    bootstrap: str, topic: str, expected: int, timeout: float, worker: subprocess.Popen[bytes]
) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline and worker.poll() is None:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_confluent_to_faust_and_back(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    source, sink = topic_factory("echo-in"), topic_factory("echo-out")
    sent = [f"message-{i}".encode() for i in range(200)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for value in sent:
        producer.produce(source, value=value)
    assert producer.flush(30) == 0

    env = {
        **os.environ,
        "ECHO_BROKER": kafka_bootstrap,
        "ECHO_IN": source,
        "ECHO_OUT": sink,
        "ECHO_DATADIR": str(tmp_path / "faust"),
        "ECHO_WEB_PORT": str(free_port()),
    }
    worker = subprocess.Popen(
        [sys.executable, str(APP), "worker", "--loglevel", "warn"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        received = consume(kafka_bootstrap, sink, len(sent), timeout=90, worker=worker)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert sorted(received) == sorted(b"faust:" + v for v in sent), output[-3000:]
