"""The transport contract: what the monitor and retrainer loops need from a message log.

The loops in `driftline.streams.loops` decide *what* happens to a micro-batch; a transport
only moves bytes. Two transports implement this contract: Kafka (the Faust worker for the
monitor, `driftline.streams.kafka.app`; a librdkafka consumer for the retrainer,
`driftline.streams.kafka.retrainer_service`) and the in-process bus
(`driftline.streams.embedded.runner` over `driftline.streams.embedded.bus.InMemoryBus`).

What a transport guarantees, and the loops rely on:

* **Batches per partition, in offset order.** A shell hands the loop the records of *one*
  topic partition at a time (a Faust fetch, a bus poll split by partition).
* **Redelivery from the commit.** Records after a partition's committed offset are delivered
  again after a restart, a rebalance or a pause — never skipped. So a loop commits an offset
  only once everything derived from the records before it is durable.
* **Produce, then commit.** `Transport.commit` first makes every record sent through
  `Transport.send` durable (a producer flush on Kafka), then commits the offsets: a crash
  between the two re-sends an output but never loses one.
* **State beside its partition.** `Transport.save_state` keeps the bytes of a partition's step
  state where the partition's next owner finds them (`Transport.load_state`): a Faust
  table whose changelog is co-partitioned with the input, or memory for the bus.
* **The pipeline chart beside its topic.** With pooled detection the owner of the
  one-partition ``{p}.detector-summaries`` topic keeps the pipeline chart; `save_pool_state`
  puts its bytes where that topic's next owner finds them (a one-partition Faust table, or
  memory for the bus).
* **Assignment callbacks.** When partitions are revoked the shell calls the loop's
  ``revoked`` so it drops their in-memory state (the table brings it back to the next owner).

>>> import asyncio
>>> from driftline.streams.embedded.bus import InMemoryBus
>>> from driftline.streams.embedded.runner import BusTransport
>>> bus = InMemoryBus()
>>> t = BusTransport(bus)
>>> asyncio.run(t.send([Record("p.drift", b"{}", key=b"p")]))
>>> bus.end_offsets("p.drift")
[1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from driftline.schemas import CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE

__all__ = ["JSON_HEADERS", "Offsets", "Record", "Transport"]

Offsets = Mapping[tuple[str, int], int]
"""(topic, partition) -> the next offset to read, as Kafka commits it."""

JSON_HEADERS: tuple[tuple[str, bytes], ...] = ((CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),)


@dataclass(frozen=True, slots=True)
class Record:
    """One message to produce: raw bytes, so a transport never re-encodes what a loop built."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = JSON_HEADERS


class Transport(Protocol):
    """The sink side of a transport; the source side is the shell calling the loop.

    Kafka and the bus push batches at their own pace (a Faust agent, a replay step), so the
    loop does not poll: its shell calls it with each batch, and the loop calls back here.
    """

    async def send(self, records: Sequence[Record]) -> None:
        """Queue ``records`` for production (durable at the latest by the next commit)."""

    async def commit(self, offsets: Offsets) -> None:
        """Make every record sent so far durable, then commit ``offsets`` of the group."""

    def save_state(self, partition: int, key: bytes, value: bytes) -> None:
        """Keep ``value`` under ``key`` beside input ``partition`` (durable by the commit)."""

    def load_state(self, key: bytes) -> bytes | None:
        """The bytes last saved under ``key`` (after a restart: the recovered ones)."""

    def save_pool_state(self, value: bytes) -> None:
        """Keep the pipeline chart's bytes beside ``{p}.detector-summaries`` (durable by the
        commit), where the next owner of that one-partition topic finds them."""

    def load_pool_state(self) -> bytes | None:
        """The pipeline chart's bytes last saved (after a restart: the recovered ones)."""
