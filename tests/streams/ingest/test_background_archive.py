"""The archive writer thread: segments are written while the next batches are processed, and
offsets still advance only over archived (or dead-lettered) rows — with a slow writer, a
refusing one, a store that is down, and a crash before a segment is written."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.lifecycle_store.archive import Archive
from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    DeadLetter,
    InferenceBatch,
)
from driftline.streams.embedded.bus import InMemoryBus
from driftline.streams.embedded.runner import BusTransport
from driftline.streams.loops.monitor import MonitorLoop
from driftline.streams.monitor.step import MonitorStep

P = "bgarch"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
INPUTS = f"{P}.inputs"


def _config() -> PipelineConfig:
    return PipelineConfig(
        name=P, detector={"reference_rows": 100, "ert": 1000, "params": {"n_simulated": 20000}}
    )


def _store(tmp_path: Path) -> LifecycleStore:
    return LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))


def _produce(bus: InMemoryBus, batches: int, rows: int = 100, seed: int = 0) -> set[str]:
    rng = np.random.default_rng(seed)
    ids: set[str] = set()
    for b in range(batches):
        names = [f"e{b}-{i}" for i in range(rows)]
        stamps = [T0 + timedelta(seconds=b * rows + i) for i in range(rows)]
        batch = InferenceBatch.from_arrays(P, names, stamps, rng.normal(size=(rows, 2)), ["a", "b"])
        bus.produce(
            INPUTS,
            batch.to_ipc(),
            headers=[(CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode())],
            partition=0,
        )
        ids.update(names)
    return ids


class Gate:
    """Patches `Archive.append_rows`: writes wait for ``open()``; ``refuse`` names event ids
    whose rows are refused, ``down`` refuses every write."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, closed: bool = False) -> None:
        self.opened = threading.Event()
        if not closed:
            self.opened.set()
        self.refuse: set[str] = set()
        self.down = False
        self.crashed = False
        self.writes = 0
        real = Archive.append_rows

        def append_rows(archive: Archive, table: pa.Table) -> Any:
            self.opened.wait(30)
            if self.crashed:
                raise OSError("the process died before this write")
            if self.down:
                raise OSError("store unreachable")
            if self.refuse & set(table.column("event_id").to_pylist()):
                raise OSError("disk says no")
            self.writes += 1
            return real(archive, table)

        monkeypatch.setattr(Archive, "append_rows", append_rows)


def _step(store: LifecycleStore) -> MonitorStep:
    return MonitorStep(_config(), store, pipeline=P, archive_rows=50_000, background_archive=True)


def test_offsets_wait_for_a_slow_writer_and_advance_once_it_has_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, bus = _store(tmp_path), InMemoryBus(partitions=1)
    ids = _produce(bus, 3)
    gate = Gate(monkeypatch, closed=True)
    step = _step(store)
    transport = BusTransport(bus)
    loop = MonitorLoop(step, transport, interval_s=0)

    async def run() -> None:
        consumer = bus.consumer(transport.group_id, [INPUTS])
        out = await loop.inputs(consumer.poll())  # processed; its checkpoint waits
        assert out.rows == 300 and step.rows_seen == 300
        assert step.next_offset(INPUTS, 0) == 0
        assert bus.committed(transport.group_id, INPUTS) == [0]
        assert transport.load_state(loop.state_key(0)) is None  # no state before the archive
        await loop.checkpoint_if_due()  # still unwritten: nothing moves
        assert bus.committed(transport.group_id, INPUTS) == [0]
        gate.opened.set()
        await loop.checkpoint()

    asyncio.run(run())
    assert bus.committed(transport.group_id, INPUTS) == [3]
    assert set(store.archive(P).read_rows().column("event_id").to_pylist()) == ids
    assert transport.load_state(loop.state_key(0)) is not None
    store.close()


def test_a_crash_before_the_segment_is_written_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, bus = _store(tmp_path), InMemoryBus(partitions=1)
    ids = _produce(bus, 4)
    gate = Gate(monkeypatch, closed=True)
    transport = BusTransport(bus)
    first = MonitorLoop(_step(store), transport, interval_s=0)

    async def crash_then_restart() -> MonitorStep:
        consumer = bus.consumer(transport.group_id, [INPUTS])
        out = await first.inputs(consumer.poll())  # bootstrap (100 rows), 300 monitored
        assert out.rows == 400
        # The worker dies here: its segment was never written, nothing was committed.
        gate.crashed = True
        gate.opened.set()
        assert bus.committed(transport.group_id, INPUTS) == [0]
        gate.crashed = False
        step = MonitorStep(_config(), store, pipeline=P, background_archive=True)
        second = MonitorLoop(step, transport, interval_s=0)
        again = bus.consumer(transport.group_id, [INPUTS])
        redelivered = again.poll()
        assert [m.offset for m in redelivered] == [0, 1, 2, 3]
        await second.inputs(redelivered)
        await second.checkpoint()
        return step

    step = asyncio.run(crash_then_restart())
    assert bus.committed(transport.group_id, INPUTS) == [4]
    assert set(store.archive(P).read_rows().column("event_id").to_pylist()) == ids
    assert step.rows_seen == 400  # the restarted worker saw every row once
    store.close()


def test_refused_rows_become_poison_whose_dead_letter_goes_out_before_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, bus = _store(tmp_path), InMemoryBus(partitions=1)
    ids = _produce(bus, 3)
    gate = Gate(monkeypatch)
    gate.refuse = {"e1-7"}  # one row of the message at offset 1
    transport = BusTransport(bus)
    loop = MonitorLoop(_step(store), transport, interval_s=3600)
    seen_at_commit: list[tuple[list[int], list[int]]] = []
    commit = transport.commit

    async def watched_commit(offsets: Any) -> None:
        seen_at_commit.append((bus.end_offsets(f"{P}.dlq"), dict(offsets).get((INPUTS, 0))))
        await commit(offsets)

    transport.commit = watched_commit  # type: ignore[method-assign]

    async def run() -> None:
        consumer = bus.consumer(transport.group_id, [INPUTS])
        await loop.inputs(consumer.poll())
        await loop.checkpoint()

    asyncio.run(run())
    letters = [DeadLetter.from_json(m.value) for m in bus.consumer("r", [f"{P}.dlq"]).poll()]
    assert [(d.source_offset, d.reason.value) for d in letters] == [(1, "poison")]
    assert seen_at_commit == [([1], 3)]  # the dead letter was out before offset 3 was committed
    archived = set(store.archive(P).read_rows().column("event_id").to_pylist())
    assert archived == {i for i in ids if not i.startswith("e1-")}
    store.close()


def test_a_store_that_is_down_holds_every_offset_and_the_rows_are_written_when_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, bus = _store(tmp_path), InMemoryBus(partitions=1)
    ids = _produce(bus, 3)
    gate = Gate(monkeypatch)
    gate.down = True
    transport = BusTransport(bus)
    step = _step(store)
    loop = MonitorLoop(step, transport, interval_s=3600)

    async def run() -> None:
        consumer = bus.consumer(transport.group_id, [INPUTS])
        await loop.inputs(consumer.poll())
        with pytest.raises(OSError, match="unreachable"):
            await loop.checkpoint()
        assert bus.committed(transport.group_id, INPUTS) == [0]
        assert step.next_offset(INPUTS, 0) == 0
        assert transport.load_state(loop.state_key(0)) is None
        gate.down = False
        await loop.checkpoint()  # the refused segment is written with the next one

    asyncio.run(run())
    assert bus.committed(transport.group_id, INPUTS) == [3]
    assert store.archive(P).row_count() == len(ids)  # written once, no duplicate rows
    assert set(store.archive(P).read_rows().column("event_id").to_pylist()) == ids
    store.close()


def test_the_step_alone_holds_offsets_until_a_background_segment_is_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    bus = InMemoryBus(partitions=1)
    _produce(bus, 2)
    gate = Gate(monkeypatch, closed=True)
    step = MonitorStep(_config(), store, pipeline=P, archive_rows=1, background_archive=True)
    msgs = bus.consumer("g", [INPUTS]).poll()
    step.process(msgs[:1])  # a full segment: handed to the writer, not waited for
    step.process(msgs[1:])
    assert step.next_offset(INPUTS, 0) == 0 and step.covered_offset(INPUTS, 0) == 2
    gate.opened.set()
    step.flush()
    assert step.next_offset(INPUTS, 0) == 2
    assert store.archive(P).row_count() == 200
    store.close()
