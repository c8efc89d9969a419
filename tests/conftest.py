"""Shared fixtures: the real Kafka broker and factories for topics and pipeline names.

The broker comes from ``KAFKA_BOOTSTRAP_SERVERS`` (``.ci/run`` starts one with
``scripts/kafka.sh``). Without it, the session starts one with the same script and stops it at
the end. A test that needs Kafka fails, never skips, when no broker can be had.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Programs that tests run as subprocesses, not test modules.
collect_ignore = ["kafka/echo_app.py"]


def _broker_answers(bootstrap: str, timeout: float = 10.0) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Apache Kafka broker."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    started = False
    if not bootstrap:
        bootstrap = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
        # Stop at the end only a broker this session started, never one already running.
        if not _broker_answers(bootstrap, timeout=2.0):
            subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh"), "start"], check=True)
            started = True
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    if not _broker_answers(bootstrap):
        pytest.fail(f"no Kafka broker answers at {bootstrap}: start one with scripts/kafka.sh")
    yield bootstrap
    if started:
        subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh"), "stop"], check=False)


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Names unique to one test, so tests sharing a broker never see each other's topics."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def topic_factory(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Create real topics for a test (deleted afterwards)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(
        prefix: str = "topic", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        name = unique_name(prefix)
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            # A topic already gone is fine at teardown.
            with contextlib.suppress(Exception):
                future.result(timeout=30)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API server (moto's server mode) on a free loopback port: its endpoint URL."""
    import socket
    import sys
    import time

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto's S3 server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL server's URL (with its password): ``DRIFTLINE_TEST_POSTGRES_URL``, or
    one ``scripts/postgres.sh start`` installs and starts."""
    url = os.environ.get("DRIFTLINE_TEST_POSTGRES_URL")
    if url:
        return url
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    match = re.search(r"DRIFTLINE_TEST_POSTGRES_URL='([^']+)'", result.stdout)
    if result.returncode != 0 or match is None:
        pytest.fail(
            "could not start PostgreSQL with scripts/postgres.sh (set "
            f"DRIFTLINE_TEST_POSTGRES_URL to use another server):\n{result.stderr[-2000:]}"
        )
    os.environ["DRIFTLINE_TEST_POSTGRES_URL"] = match.group(1)
    return match.group(1)
