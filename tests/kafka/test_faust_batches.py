"""What a batch reader next to Faust can get wrong: records revoked mid-fetch must come again.

`BatchReader` reads the batch topics with librdkafka for the partitions Faust assigns the
worker. Its client's position is past a fetch the moment the fetch returns, and batches wait in
a queue for the loop; so records of a partition revoked (and maybe given back) while they are
fetched or queued are skipped for good unless the partition is read again from a position
nothing past the loop's last commit. These tests run the reader on the real broker, drive
Faust's public rebalance signals the way Faust sends them (revoked, then complete once
recovery is done), and check every offset is delivered with none skipped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from confluent_kafka import TopicPartition

from driftline.config.settings import Settings
from driftline.streams.kafka.clients import ensure_topics, make_consumer, make_producer
from driftline.streams.kafka.faust_batches import Batch, BatchReader

pytestmark = [pytest.mark.kafka]

CHANGELOG = "state-changelog"
PER_PARTITION = 40


class _TP(NamedTuple):
    topic: str
    partition: int


class _Signal:
    """Faust's signal call convention: ``receiver(sender, *args, signal=..., **kwargs)``."""

    def __init__(self) -> None:
        self.receivers: list[Callable[..., Awaitable[None]]] = []

    def connect(self, fun: Callable[..., Awaitable[None]]) -> None:
        self.receivers.append(fun)

    async def send(self, *args: Any) -> None:
        for fun in self.receivers:
            await fun(None, *args, signal=self)


class _App:
    """The public parts of a Faust app the reader uses."""

    def __init__(self) -> None:
        self.on_partitions_revoked = _Signal()
        self.on_rebalance_complete = _Signal()
        self.actives: set[_TP] = set()
        self.assignor = SimpleNamespace(assigned_actives=lambda: set(self.actives))
        self.conf = SimpleNamespace(broker_request_timeout=10.0)

    def add_dependency(self, service: Any) -> None:
        pass

    async def assign(self, partitions: set[int]) -> None:
        """A rebalance: everything revoked (Faust's eager protocol), then ``partitions``."""
        revoked, self.actives = set(self.actives), {_TP(CHANGELOG, p) for p in partitions}
        await self.on_partitions_revoked.send(revoked)
        await self.on_rebalance_complete.send()


@pytest.fixture
def topic(kafka_bootstrap: str) -> tuple[Settings, str]:
    name = f"batches-{uuid.uuid4().hex[:8]}"
    settings = Settings(pipeline=name, kafka_bootstrap_servers=kafka_bootstrap, partitions=2)
    ensure_topics(settings)
    producer = make_producer(settings)
    for p in (0, 1):
        for i in range(PER_PARTITION):
            producer.produce(settings.topics.inputs, value=b"%d" % i, partition=p)
    producer.flush(30)
    return settings, settings.topics.inputs


def _reader(settings: Settings, app: _App, group: str, **follow: Any) -> BatchReader:
    reader = BatchReader(app, lambda: make_consumer(settings, group), max_records=7)
    table = SimpleNamespace(changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG))
    reader.follow(settings.topics.inputs, table, **follow)
    return reader


async def _run_started(
    reader: BatchReader, topic: str, handle: Callable[[Batch], Awaitable[bool]]
) -> None:
    try:
        async with asyncio.timeout(60):
            async for batch in reader.batches(topic):
                if await handle(batch):
                    return
    finally:
        await reader.on_stop()


def _no_gap(batches: list[Batch], partition: int) -> list[int]:
    """The offsets of ``partition`` as delivered; every batch starts at or before the next
    offset not yet delivered (read again is fine, skipped is not)."""
    seen = -1
    for b in batches:
        if b.partition != partition:
            continue
        first = b.messages[0].offset
        assert first <= seen + 1, f"offsets {seen + 1}..{first - 1} of {partition} were skipped"
        offsets = [m.offset for m in b.messages]
        assert offsets == list(range(first, first + len(offsets))), "in order, none missing"
        seen = max(seen, offsets[-1])
    return sorted({m.offset for b in batches if b.partition == partition for m in b.messages})


def test_records_revoked_mid_fetch_are_delivered_again_never_skipped(topic) -> None:
    settings, name = topic
    app = _App()
    reader = _reader(settings, app, f"g-{uuid.uuid4().hex}")
    delivered: list[Batch] = []
    committed: dict[int, int] = {}
    rebalances = 0

    async def handle(batch: Batch) -> bool:
        nonlocal rebalances
        delivered.append(batch)
        if len(delivered) % 3 == 0:  # a checkpoint: what was handled so far is durable
            await reader.commit({(name, p): o for p, o in committed.items()})
        committed[batch.partition] = batch.messages[-1].offset + 1
        if len(delivered) % 3 == 0 and rebalances < 4:
            # A rebalance while later fetches of both partitions are queued or in flight:
            # both are revoked and given back (the eager protocol revokes everything).
            rebalances += 1
            await app.assign({0, 1})
            assert reader.stale(batch), "a batch fetched before the rebalance is stale"
        return rebalances == 4 and all(committed.get(p) == PER_PARTITION for p in (0, 1))

    async def main() -> None:
        await reader.on_start()
        await app.assign({0, 1})
        await _run_started(reader, name, handle)

    asyncio.run(main())
    assert rebalances == 4
    for p in (0, 1):
        assert _no_gap(delivered, p) == list(range(PER_PARTITION))


def test_a_batch_of_a_revoked_partition_is_never_delivered(topic) -> None:
    """Queued batches of a partition revoked meanwhile are dropped; when it comes back it is
    read again from the group's commit (here: nothing committed, so from the start)."""
    settings, name = topic
    app = _App()
    reader = _reader(settings, app, f"g-{uuid.uuid4().hex}")
    delivered: list[Batch] = []

    async def handle(batch: Batch) -> bool:
        delivered.append(batch)
        if len(delivered) == 1:
            await asyncio.sleep(0.5)  # later fetches of the partition fill the queue
            await app.assign({1 - batch.partition})
            await asyncio.sleep(0.5)
            await app.assign({0, 1})
        return sum(len(b.messages) for b in delivered) >= 2 * PER_PARTITION + len(
            delivered[0].messages
        )

    async def main() -> None:
        await reader.on_start()
        await app.assign({0, 1})
        await _run_started(reader, name, handle)

    asyncio.run(main())
    first = delivered[0]
    again = [b for b in delivered[1:] if b.partition == first.partition]
    assert again[0].messages[0].offset == 0, "read again from the (absent) commit"
    for p in (0, 1):
        assert _no_gap(delivered, p) == list(range(PER_PARTITION))


def test_the_start_is_the_smaller_of_the_state_offset_and_the_commit(topic) -> None:
    """A zombie worker's late commit (past what the recovered state covers) must not make the
    new owner skip rows its state never folded in; a commit behind the state wins too."""
    settings, name = topic
    group = f"g-{uuid.uuid4().hex}"
    zombie = make_consumer(settings, group)
    zombie.commit(
        offsets=[TopicPartition(name, 0, 30), TopicPartition(name, 1, 5)], asynchronous=False
    )
    zombie.close()
    app = _App()
    reader = _reader(settings, app, group, start=lambda p: {0: 12, 1: 20}[p])
    first: dict[int, int] = {}

    async def handle(batch: Batch) -> bool:
        first.setdefault(batch.partition, batch.messages[0].offset)
        return len(first) == 2

    async def main() -> None:
        await reader.on_start()
        await app.assign({0, 1})
        await _run_started(reader, name, handle)

    asyncio.run(main())
    assert first == {0: 12, 1: 5}


def test_a_revocation_while_the_assignment_is_computed_cancels_it(topic) -> None:
    settings, _ = topic
    app = _App()

    def start(partition: int) -> int | None:
        # Faust's next rebalance begins while this worker looks up its start positions.
        asyncio.get_running_loop().create_task(app.on_partitions_revoked.send(set(app.actives)))
        return None

    reader = _reader(settings, app, f"g-{uuid.uuid4().hex}", start=start)

    async def main() -> None:
        await reader.on_start()
        try:
            await app.assign({0, 1})
            await asyncio.sleep(0.5)
            assert reader.owned() == set(), "the stale assignment was not applied"
        finally:
            await reader.on_stop()

    asyncio.run(main())
