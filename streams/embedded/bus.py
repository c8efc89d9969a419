"""InMemoryBus: the in-process twin of Kafka for the embedded runner and for tests.

The embedded runner and the Kafka path run the same steps; only the transport differs. This
bus keeps what those steps rely on from Kafka and nothing more:

* topics of numbered partitions holding append-only logs of `RawMessage` with increasing
  offsets; a keyed message always lands in the same partition;
* compacted topics (``{p}.model-versions``): a new record drops the older ones of its key, so
  a reader from the beginning sees only the latest per key (offsets keep their gaps, as in
  Kafka);
* consumer groups with committed offsets: a consumer starts at its group's committed position
  (or the beginning), ``poll`` returns what came since and ``commit`` moves the group on, so a
  consumer re-created without committing reads the same messages again (at-least-once).

One lock guards all state, so producers and consumers may live on different threads.

>>> bus = InMemoryBus()
>>> first = bus.produce("fraud.inputs", b'{"x": 1}', key=b"e-1")
>>> consumer = bus.consumer("monitor", ["fraud.inputs"])
>>> [(m.topic, m.offset, m.value) for m in consumer.poll()]
[('fraud.inputs', 0, b'{"x": 1}')]
>>> consumer.poll()
[]
"""

from __future__ import annotations

import bisect
import itertools
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from driftline.streams.exceptions import StreamsError
from driftline.streams.monitor.messages import RawMessage

__all__ = ["BusConsumer", "BusError", "InMemoryBus"]


class BusError(StreamsError, ValueError):
    """A bus call got a value it cannot use (bad partition, unknown topic); says the fix."""


@dataclass
class _Partition:
    offsets: list[int] = field(default_factory=list)
    messages: list[RawMessage] = field(default_factory=list)
    next_offset: int = 0

    def append(self, message: RawMessage) -> None:
        self.offsets.append(message.offset)
        self.messages.append(message)
        self.next_offset = message.offset + 1

    def drop_key(self, key: bytes) -> None:
        keep = [i for i, m in enumerate(self.messages) if m.key != key]
        self.offsets = [self.offsets[i] for i in keep]
        self.messages = [self.messages[i] for i in keep]

    def read(self, start: int, limit: int) -> list[RawMessage]:
        first = bisect.bisect_left(self.offsets, start)
        return self.messages[first : first + limit]


@dataclass
class _Topic:
    partitions: list[_Partition]
    compact: bool
    round_robin: itertools.cycle[int]


class InMemoryBus:
    """Topics, partitions, offsets and consumer groups in memory, like a one-broker Kafka.

    ``partitions`` is the default partition count of topics created on first use.
    """

    def __init__(self, partitions: int = 1) -> None:
        if partitions < 1:
            raise BusError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self._topics: dict[str, _Topic] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._lock = threading.Lock()

    def create_topic(self, name: str, partitions: int | None = None, compact: bool = False) -> None:
        """Create ``name`` (no-op if it exists with the same partition count)."""
        count = self.partitions if partitions is None else partitions
        if count < 1:
            raise BusError(f"topic {name!r}: partitions must be >= 1, got {count}")
        with self._lock:
            existing = self._topics.get(name)
            if existing is not None:
                if len(existing.partitions) != count:
                    raise BusError(
                        f"topic {name!r} exists with {len(existing.partitions)} partitions, "
                        f"not {count}: use the existing count or another topic name"
                    )
                return
            self._create(name, count, compact)

    def topics(self) -> list[str]:
        """Names of the topics that exist, sorted."""
        with self._lock:
            return sorted(self._topics)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        timestamp: datetime | None = None,
        partition: int | None = None,
    ) -> RawMessage:
        """Append one message and return it with its partition and offset.

        Keyed messages go to ``crc32(key) % partitions``, unkeyed ones round-robin, unless
        ``partition`` is given.
        """
        with self._lock:
            state = self._topics.get(topic) or self._create(topic, self.partitions, False)
            index = self._partition_for(topic, state, key, partition)
            part = state.partitions[index]
            message = RawMessage(
                value=value,
                key=key,
                headers=tuple(headers),
                topic=topic,
                partition=index,
                offset=part.next_offset,
                timestamp=timestamp or datetime.now(UTC),
            )
            if state.compact and key is not None:
                part.drop_key(key)
            part.append(message)
            return message

    def consumer(self, group_id: str, topics: Sequence[str]) -> BusConsumer:
        """A consumer of ``topics`` in group ``group_id`` (topics are created if missing)."""
        for name in topics:
            with self._lock:
                if name not in self._topics:
                    self._create(name, self.partitions, False)
        return BusConsumer(self, group_id, tuple(topics))

    def end_offsets(self, topic: str) -> list[int]:
        """The next offset of each partition of ``topic`` (its high watermarks)."""
        with self._lock:
            return [p.next_offset for p in self._require(topic).partitions]

    def committed(self, group_id: str, topic: str) -> list[int]:
        """The group's committed offset of each partition of ``topic`` (0 when none)."""
        with self._lock:
            count = len(self._require(topic).partitions)
            return [self._committed.get((group_id, topic, p), 0) for p in range(count)]

    def commit(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``offsets`` ((topic, partition) -> next offset to read) for ``group_id``."""
        with self._lock:
            for (topic, partition), offset in offsets.items():
                self._committed[(group_id, topic, partition)] = offset

    def _create(self, name: str, count: int, compact: bool) -> _Topic:
        state = _Topic([_Partition() for _ in range(count)], compact, itertools.cycle(range(count)))
        self._topics[name] = state
        return state

    def _require(self, topic: str) -> _Topic:
        state = self._topics.get(topic)
        if state is None:
            raise BusError(f"unknown topic {topic!r}: produce to it or create_topic() it first")
        return state

    @staticmethod
    def _partition_for(topic: str, state: _Topic, key: bytes | None, partition: int | None) -> int:
        count = len(state.partitions)
        if partition is not None:
            if not 0 <= partition < count:
                raise BusError(
                    f"partition {partition} out of range for topic {topic!r} "
                    f"with {count} partitions: use 0..{count - 1}"
                )
            return partition
        if key is not None:
            return zlib.crc32(key) % count
        return next(state.round_robin)

    def _read(
        self, group_id: str, topic: str, positions: dict[tuple[str, int], int], limit: int
    ) -> list[RawMessage]:
        state = self._require(topic)
        out: list[RawMessage] = []
        for index, part in enumerate(state.partitions):
            if len(out) >= limit:
                break
            start = positions.get((topic, index))
            if start is None:
                start = self._committed.get((group_id, topic, index), 0)
            batch = part.read(start, limit - len(out))
            if batch:
                positions[(topic, index)] = batch[-1].offset + 1
            else:
                positions.setdefault((topic, index), start)
            out.extend(batch)
        return out


class BusConsumer:
    """One member of a consumer group on an `InMemoryBus` (made by `InMemoryBus.consumer`).

    >>> bus = InMemoryBus()
    >>> _ = bus.produce("t", b"a")
    >>> c = bus.consumer("g", ["t"])
    >>> len(c.poll()), c.lag()
    (1, 0)
    >>> len(bus.consumer("g", ["t"]).poll())  # nothing committed yet: read again
    1
    >>> c.commit(); len(bus.consumer("g", ["t"]).poll())
    0
    """

    def __init__(self, bus: InMemoryBus, group_id: str, topics: tuple[str, ...]) -> None:
        self._bus = bus
        self.group_id = group_id
        self.topics = topics
        self._positions: dict[tuple[str, int], int] = {}

    def poll(self, max_messages: int = 10_000) -> list[RawMessage]:
        """Up to ``max_messages`` messages after this consumer's position, oldest first."""
        if max_messages < 1:
            raise BusError(f"max_messages must be >= 1, got {max_messages}")
        out: list[RawMessage] = []
        with self._bus._lock:
            for topic in self.topics:
                out.extend(
                    self._bus._read(self.group_id, topic, self._positions, max_messages - len(out))
                )
                if len(out) >= max_messages:
                    break
        return out

    def commit(self) -> None:
        """Commit the position reached by ``poll`` for the whole group."""
        with self._bus._lock:
            for (topic, index), offset in self._positions.items():
                self._bus._committed[(self.group_id, topic, index)] = offset

    def lag(self) -> int:
        """Messages not yet returned by ``poll`` (compacted gaps excepted)."""
        with self._bus._lock:
            total = 0
            for topic in self.topics:
                for index, part in enumerate(self._bus._require(topic).partitions):
                    start = self._positions.get(
                        (topic, index), self._bus._committed.get((self.group_id, topic, index), 0)
                    )
                    total += len(part.offsets) - bisect.bisect_left(part.offsets, start)
            return total
