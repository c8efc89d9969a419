"""The loops over the in-process transport: what they commit, route and redeliver."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import DeadLetter, DeadLetterReason, EventVerifier, InferenceBatch
from driftline.streams.embedded.bus import InMemoryBus
from driftline.streams.embedded.runner import BusTransport
from driftline.streams.loops.monitor import MonitorLoop
from driftline.streams.loops.retrainer import RetrainerLoop
from driftline.streams.monitor.step import MonitorStep

P = "loops"


def _loop(letters: list[DeadLetter], fail: bool = False) -> RetrainerLoop:
    def send(letter: DeadLetter) -> None:
        if fail:
            raise ConnectionError("broker down")
        letters.append(letter)

    # A bad record must never reach the retrainer or the store: plain objects prove it.
    return RetrainerLoop(
        object(),  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        P,
        send_dead_letter=send,
        verifier=EventVerifier([]),
    )


def test_a_bad_drift_record_becomes_a_dead_letter_with_its_bytes() -> None:
    bus, letters = InMemoryBus(), []
    loop = _loop(letters)
    bad = bus.produce(f"{P}.drift", b"{not json", key=b"k")
    other = bus.produce(f"{P}.drift", b'{"pipeline": "other"}')
    assert loop.drift(bad) is None and loop.drift(other) is None
    assert [d.reason for d in letters] == [DeadLetterReason.SCHEMA_VIOLATION] * 2
    assert letters[0].payload == b"{not json" and letters[0].source_offset == 0
    assert loop.stats.invalid_events == 2


def test_a_dead_letter_that_cannot_be_sent_is_not_swallowed() -> None:
    """The shell commits only when `drift` returns: a failed dead letter must raise."""
    bus = InMemoryBus()
    loop = _loop([], fail=True)
    with pytest.raises(ConnectionError):
        loop.drift(bus.produce(f"{P}.drift", b"{not json"))
    assert loop.stats.invalid_events == 0


def _rows(bus: InMemoryBus, n: int, partition: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for lo in range(0, n, 100):
        stamps = [t0 + timedelta(seconds=i) for i in range(lo, lo + 100)]
        ids = [f"p{partition}-{i}" for i in range(lo, lo + 100)]
        batch = InferenceBatch.from_arrays(P, ids, stamps, rng.normal(size=(100, 2)), ["a", "b"])
        bus.produce(
            f"{P}.inputs",
            batch.to_ipc(),
            headers=[("content-type", b"application/vnd.apache.arrow.stream")],
            partition=partition,
        )


def test_rows_of_a_revoked_partition_since_the_checkpoint_come_again_none_lost(
    tmp_path: Path,
) -> None:
    config = PipelineConfig(name=P, detector={"reference_rows": 100, "ert": 10_000})
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    bus = InMemoryBus(partitions=2)
    transport = BusTransport(bus)
    # Rows wait for the checkpoint to be archived, as in the Faust worker.
    step = MonitorStep(config, store, pipeline=P, archive_rows=50_000)
    loop = MonitorLoop(step, transport, interval_s=3600)  # checkpoints only when asked
    _rows(bus, 300, partition=0, seed=1)

    async def run() -> None:
        first = bus.consumer(transport.group_id, [f"{P}.inputs"])
        await loop.inputs(first.poll(2))  # 200 rows, then a checkpoint
        await loop.checkpoint()
        await loop.inputs(first.poll())  # 100 more, not checkpointed
        loop.revoked({0})  # ... and the partition moves away before the next checkpoint
        assert bus.committed(transport.group_id, f"{P}.inputs") == [2, 0]
        again = bus.consumer(transport.group_id, [f"{P}.inputs"])  # its next owner
        redelivered = again.poll()
        assert [m.offset for m in redelivered] == [2]
        await loop.inputs(redelivered)
        await loop.checkpoint()

    asyncio.run(run())
    assert bus.committed(transport.group_id, f"{P}.inputs") == [3, 0]
    # The archive is at-least-once (readers count distinct event ids): nothing is missing.
    ids = store.archive(P).read_rows().column("event_id").to_pylist()
    assert set(ids) == {f"p0-{i}" for i in range(300)}
    store.close()
