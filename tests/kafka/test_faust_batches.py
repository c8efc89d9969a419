"""What the batch hook can get wrong: records fetched but not delivered must come again.

`BatchConsumer` takes whole fetches out of Faust's consumer. The client's position is past a
fetch the moment it returns, so records the hook does not hand on — their partition was
paused, the flow stopped, or a rebalance began while an earlier partition of the same fetch
was being handled — are skipped for good unless something seeks back. These tests drive the
hook over a client that keeps a real position per partition (advanced by every fetch, moved
by every seek) and check that every offset is delivered, in order, with none skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from driftline.streams.kafka.faust_batches import Batch, BatchConsumer

TOPIC = "p.inputs"
TPS = [TP(TOPIC, 0), TP(TOPIC, 1)]
PER_FETCH = 3


class _Client:
    """Partitions of 10 records each and a position per partition, like aiokafka's fetcher."""

    def __init__(self) -> None:
        self.end = 10
        self.position = {tp: 0 for tp in TPS}
        self.paused: set[TP] = set()
        #: shared with the hook, as Faust's active-partition set is: a pause mutates it
        self.active: set[TP] = set(TPS)

    def pause(self, tp: TP) -> None:
        self.paused.add(tp)
        self.active.discard(tp)

    def resume(self) -> None:
        self.paused.clear()
        self.active.update(TPS)

    def fetch(self) -> dict[TP, list[ConsumerRecord]]:
        out = {}
        for tp in TPS:
            if tp in self.paused:
                continue
            start = self.position[tp]
            stop = min(self.end, start + PER_FETCH)
            out[tp] = [
                ConsumerRecord(TOPIC, tp.partition, o, 0, 0, None, b"{}", None, 0, 2, [])
                for o in range(start, stop)
            ]
            self.position[tp] = stop
        return out


def _consumer(monkeypatch: pytest.MonkeyPatch, client: _Client) -> Any:
    async def parent_wait(self: Any, timeout: float) -> tuple[Any, Any]:
        return client.fetch(), client.active

    monkeypatch.setattr(faust_aiokafka.Consumer, "_wait_next_records", parent_wait)
    consumer: Any = object.__new__(BatchConsumer)
    consumer.app = SimpleNamespace(batch_handlers={}, consumer_generation_id=1)
    consumer.flow_active = True
    consumer._read_offset = {}

    async def seek(tp: TP, offset: int) -> None:
        if tp not in TPS:
            raise IllegalStateError(f"no current assignment for {tp}")
        client.position[tp] = offset

    consumer.seek = seek
    return consumer


def _drain(consumer: Any, client: _Client, interfere: Callable[[Batch, int], None]) -> dict:
    delivered: dict[int, list[int]] = {0: [], 1: []}
    calls = 0

    async def handle(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        delivered[batch.partition].extend(m.offset for m in batch.messages)
        interfere(batch, calls)

    consumer.app.batch_handlers[TOPIC] = handle

    async def run() -> None:
        for _ in range(50):
            consumer.flow_active = True
            client.resume()
            await consumer._wait_next_records(0.1)
            if all(client.position[tp] == client.end for tp in TPS) and all(
                len(v) >= client.end for v in delivered.values()
            ):
                return

    asyncio.run(run())
    return delivered


def test_records_of_a_partition_paused_mid_fetch_are_delivered_again(monkeypatch) -> None:
    client = _Client()
    consumer = _consumer(monkeypatch, client)

    def pause_the_other(batch: Batch, calls: int) -> None:
        if calls % 2 == 1:  # the handler of one partition pauses the next, mid-fetch
            client.pause(TPS[1 - batch.partition])

    delivered = _drain(consumer, client, pause_the_other)
    assert delivered == {0: list(range(10)), 1: list(range(10))}


def test_records_fetched_while_the_flow_stops_are_delivered_again(monkeypatch) -> None:
    client = _Client()
    consumer = _consumer(monkeypatch, client)

    def stop_flow(batch: Batch, calls: int) -> None:
        if calls % 2 == 1:
            consumer.flow_active = False

    delivered = _drain(consumer, client, stop_flow)
    assert delivered == {0: list(range(10)), 1: list(range(10))}


def test_a_rebalance_mid_fetch_delivers_nothing_more_of_that_fetch(monkeypatch) -> None:
    """After a rebalance Faust seeks to the commit; the hook must not deliver or seek itself."""
    client = _Client()
    consumer = _consumer(monkeypatch, client)
    batches: list[Batch] = []

    async def handle(batch: Batch) -> None:
        batches.append(batch)
        consumer.app.consumer_generation_id += 1  # the group rebalanced meanwhile

    consumer.app.batch_handlers[TOPIC] = handle
    asyncio.run(consumer._wait_next_records(0.1))
    assert [b.partition for b in batches] == [0]
    # Partition 1 was neither delivered nor rewound: its next owner starts at the commit.
    assert client.position[TPS[1]] == PER_FETCH
    assert TPS[1] not in consumer._read_offset
