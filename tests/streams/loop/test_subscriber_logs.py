"""Untrusted strings of a refused event cannot forge log lines.

On main the subscriber logged an unverified event's ``model_version_id`` with ``%s``: a
newline in it started a line of the attacker's choosing in the consumer service's log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from driftline.schemas import ModelVersionSigner
from driftline.streams.sdk.subscriber import ModelSubscriber
from tests.streams.loop.test_subscriber import constant_loader

FORGED_LINE = "INFO driftline: serving model version trusted-v9"


def test_a_refused_event_with_newlines_logs_one_escaped_line(
    trusted: dict[str, Any],
    event_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    forged = ModelVersionSigner.generate().sign(
        event_factory("logs-unit", 1.0, model_version_id=f"mv-1\n{FORGED_LINE}")
    )
    sub = ModelSubscriber("127.0.0.1:1", "logs-unit", loader=constant_loader, **trusted)
    with caplog.at_level(logging.WARNING, logger="driftline.streams.sdk.subscriber"):
        assert not sub.apply(forged)
    (record,) = [r for r in caplog.records if "cannot serve" in r.getMessage()]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    assert "unknown_key" in message and "\\n" + FORGED_LINE in message
