"""Operating mistakes a user makes on one host end in one line naming the setting."""

from __future__ import annotations

import socket

import pytest

from driftline.config.settings import Settings
from driftline.errors import ConfigError
from driftline.streams.kafka.worker import run_worker


def test_a_taken_metrics_port_names_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            run_worker(Settings(pipeline="ops-port", metrics_port=port))
    message = str(info.value)
    assert f"metrics port {port} is already in use" in message
    assert "DRIFTLINE_METRICS_PORT" in message and "\n" not in message
