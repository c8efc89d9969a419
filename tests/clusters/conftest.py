"""A broker that speaks only TLS and SASL, started on free ports for this test session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start ``scripts/kafka.sh`` with ``KAFKA_SECURITY=secure``; yield its client.env."""
    state = tmp_path_factory.mktemp("secure-kafka") / "broker"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(KAFKA_PORT="0", KAFKA_SECURITY="secure", KAFKA_STATE_DIR=str(state))
    subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, timeout=300)
    try:
        lines = (state / "client.env").read_text().splitlines()
        yield dict(line.split("=", 1) for line in lines if "=" in line)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False, timeout=60)
