"""Hostile records on ``{p}.detector-summaries`` against the owner's loop (pooled detection)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from driftline.schemas import DeadLetterReason, EventSigner
from driftline.streams.embedded.bus import InMemoryBus
from driftline.streams.embedded.runner import BusTransport
from driftline.streams.loops.monitor import MonitorLoop
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.helpers import config, open_store
from tests.streams.ingest.test_pooled import P, as_messages, gaussian, summaries_of


def _loop(tmp_path: Path) -> tuple[MonitorStep, MonitorLoop, EventSigner, InMemoryBus]:
    bus = InMemoryBus()
    bus.create_topic(f"{P}.detector-summaries", partitions=1)
    key = EventSigner.generate()
    step = MonitorStep(config(P), open_store(tmp_path), pipeline=P)
    return step, MonitorLoop(step, BusTransport(bus), interval_s=3600, signer=key), key, bus


def test_a_batch_of_forged_summaries_only_is_dead_lettered_and_its_offsets_pass(
    tmp_path: Path,
) -> None:
    """On main the owner's loop raised IndexError on a batch with no sealed summary (the
    pool agent crashed on whatever a stranger wrote), and a batch ending with a forged record
    committed only up to its last sealed one (the forged tail was dead-lettered again)."""
    step, loop, key, bus = _loop(tmp_path)
    plain = summaries_of(step, gaussian(1000), 1)
    stranger = EventSigner.generate()
    forged = [b"junk", stranger.seal(plain[0])]
    out = asyncio.run(loop.summaries(as_messages(step, forged)))
    assert [d.reason for d in out.dead_letters] == [DeadLetterReason.UNSIGNED] * 2
    topic = step.topics.detector_summaries
    assert loop._summaries == {(topic, 0): 2}
    assert bus.end_offsets(f"{P}.dlq") == [2]
    # A sealed summary followed by a forged one: the commit covers the forged one too.
    mixed = as_messages(step, [key.seal(plain[1]), b"junk"])
    mixed = [m._replace(offset=m.offset + 2) for m in mixed]
    out = asyncio.run(loop.summaries(mixed))
    assert [d.reason for d in out.dead_letters] == [DeadLetterReason.UNSIGNED]
    assert loop._summaries == {(topic, 0): 4}
    assert step.pool is not None and step.pool.rows_seen > 0
