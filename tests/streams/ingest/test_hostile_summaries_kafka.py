"""Forged records on ``{p}.detector-summaries`` against a live pooled worker on the real broker.

On main a batch holding only records the workers did not seal (junk, a stranger's seal) made
the owner's loop raise ``IndexError`` after dead-lettering them: the pool agent crashed.
"""

from __future__ import annotations

import pytest

from driftline.schemas import DeadLetter, DeadLetterReason, EventSigner
from driftline.streams.kafka.clients import make_producer
from tests.streams.ingest.conftest import wait_for
from tests.streams.ingest.test_pooled_kafka import (
    CHANGE,
    assigned,
    drift_events,
    produce,
    row_of,
    start,
    stream,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_forged_summaries_are_dead_letters_and_the_live_pooled_chart_goes_on(
    pipeline_run,
) -> None:
    run = start(pipeline_run, 2, "pooled")
    wait_for(lambda: assigned(run, 0), 90, "worker ready\n" + run.logs())
    topics = run.settings.topics
    x = stream()
    produce(run, x, 0, 1000, 2)  # the reference, so that the chart exists
    wait_for(lambda: run.archived() >= 1000, 120, "reference archived\n" + run.logs())
    producer = make_producer(run.settings)
    forged = [b"junk", EventSigner.generate().seal(b"DLSUM\x00\x01\x00" + b"\x00" * 64)]
    for value in forged:
        producer.produce(topics.detector_summaries, value, partition=0)
    assert producer.flush(30) == 0
    letters = run.read(topics.dlq, want=2, quiet_s=2.0, timeout=60)
    dead = [DeadLetter.from_json(m.value()) for m in letters]
    assert [d.reason for d in dead] == [DeadLetterReason.UNSIGNED] * 2, run.logs()
    assert {d.source_topic for d in dead} == {topics.detector_summaries}
    produce(run, x, 1000, len(x), 2)
    wait_for(lambda: run.archived() >= len(x), 180, "every row archived\n" + run.logs())
    (event,) = drift_events(run, want=1)
    assert row_of(event) >= CHANGE
    log = run.logs()
    assert "IndexError" not in log and "crashed" not in log.lower(), log
