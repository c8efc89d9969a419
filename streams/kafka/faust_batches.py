"""Whole fetches of a pipeline's batch topics, read by librdkafka inside the Faust worker.

Faust delivers every message on its own: per message it wraps the record, decodes it, puts
it in a queue, wakes the stream and acknowledges it — several asyncio tasks and loop turns
each, which caps an agent at roughly ten thousand messages per second on one core, far below
what the monitor's vectorized step can take. So Faust runs the worker — group membership,
co-partitioned assignment, the state tables and their changelog recovery, the ``worker``
command — and `BatchReader`, a librdkafka consumer inside the same process, reads the topics
that carry rows (``{p}.inputs``, ``{p}.labels``, ``{p}.detector-summaries``) and hands each
partition's share of a fetch to the loop as one `Batch` of `RawMessage`.

Why this design (measured side by side in one run, ``benchmarks/bench_streams_ingest.py
--baseline-tree``, JSON events, 2 cores; BENCHMARKS.md "Ingest: Faust's public API"). The
former path hooked Faust's fetcher through five private names of Faust and aiokafka. Three
ways stay on public API:

* Faust's public stream (``stream.noack().take``) keeps Faust's per-message cost — the batch
  is assembled *after* it: a do-nothing agent on it reached ~12k JSON events/s on a quiet
  machine (7% of the raw librdkafka consume+decode loop, 1.1k/s = 3% on a loaded one), far
  below the 50k events/s a worker must take.
* Producers batching rows as Arrow messages (supported) make Faust's per-message cost
  vanish for high volume, but a JSON producer is the default one, and the monitor must keep
  up with it too.
* A librdkafka consumer that follows the group's assignment (this module): a do-nothing
  worker on it took 2.4x the JSON events per second of one on the former hook in the same
  run (90.9k vs 38.0k/s), and the monitor did not get slower (19.9k vs 17.8k events/s, the
  step bounds it). It needs no private name.

How it follows Faust's assignment. Faust never subscribes to the batch topics. Every batch
topic *follows* a table whose changelog is partitioned like it (inputs and labels follow
``monitor-state``, the summaries topic follows the one-partition ``pipeline-chart``): Faust's
assignor gives changelog partition ``n`` of a table to exactly one worker of the group, as
an active table partition, and that worker reads partition ``n`` of the topics following it.
So the state of a partition and the partition itself always move together, as before.

* On ``app.on_partitions_revoked`` (a public Faust signal, sent before the group re-joins)
  the reader stops delivering the partitions following the revoked changelog partitions at
  once — batches of them already fetched or queued go stale and are dropped — and unassigns
  them from the librdkafka consumer.
* On ``app.on_rebalance_complete`` (sent once table recovery has finished) it assigns the
  partitions following this worker's active changelog partitions
  (``app.assignor.assigned_actives()``), each at its *start position*: the smaller of the
  offset recorded in the recovered state (for inputs: the monitor state's checkpoint holds
  the next offset it folded in, saved before the commit) and the offset committed in the
  reader's group; neither, the earliest offset. A rebalance that begins while the
  assignment is being computed cancels it.

Never skipped. Records of a partition that was revoked (or re-assigned) while an earlier
fetch was in flight are dropped, never delivered out of order; when the partition comes back
(to this worker or another) it is read again from its start position, which only a checkpoint
moves, and a checkpoint covers only records already handed to the loop
(``tests/kafka/test_faust_batches.py`` drives a revocation and re-assignment in the middle of
fetches). There is no pause: back-pressure is the bounded queue between the reader thread
and the loop, which stops the thread (and so the fetching) while the loop is behind.

Offsets and fencing. The reader commits to its own consumer group, ``{app id}-reader``,
through librdkafka (manual assignment: the group has no members, so the broker takes the
commit of any worker of the pipeline; nothing else may join it). Faust's group cannot take
these commits (only its members may commit there, under the current generation), and the
reader is not a member of it. Without a generation nothing fences a zombie — a worker that
lost its partitions after a session timeout and does not know yet — so the design does not
need fencing: a worker commits an offset only once everything before it is durable *by that
worker* (archived, state saved, outputs flushed), so whichever worker's commit is the last,
every record before it is in the archive: a zombie's commit can make records be read twice,
never be skipped. Inputs also start at the recovered state's own offset when that is
smaller, so a zombie's later commit cannot make the new owner's detector miss rows its
state never folded in. The commits also give the usual lag view of the reader's group.

>>> from driftline.streams.monitor.messages import RawMessage
>>> b = Batch(0, (RawMessage(b"{}", topic="p.inputs", partition=3, offset=9),))
>>> b.topic, b.partition
('p.inputs', 3)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from mode import Service

from driftline.streams.monitor.messages import RawMessage

__all__ = ["FETCH_MAX_WAIT_MS", "Batch", "BatchReader", "raw_messages", "reader_group"]

log = logging.getLogger(__name__)

#: Longest wait of the broker for data before it answers a fetch (librdkafka's default is
#: 500 ms): a fetch carries every partition the reader has on a broker, so with idle ones in
#: it (labels) the input's next fetch would wait behind them.
FETCH_MAX_WAIT_MS = 100

#: Errors of an offset look-up that a coordinator still loading or moving answers with.
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)

#: The thread hands a batch on within this long or looks again whether it must stop.
_HAND_WAIT_S = 0.5

TopicPartitionKey = tuple[str, int]


class _TP(NamedTuple):
    topic: str
    partition: int


def reader_group(app_id: str) -> str:
    """The consumer group the reader commits to (manual assignment only, never joined).

    >>> reader_group("driftline-monitor-p")
    'driftline-monitor-p-reader'
    """
    return f"{app_id}-reader"


@dataclass(frozen=True, slots=True)
class Batch:
    """The records of one topic partition from one fetch, in offset order, and the epoch of
    the partition's assignment they were fetched in (see `BatchReader.stale`)."""

    epoch: int
    messages: Sequence[RawMessage]
    #: the partition's end offset as the fetch saw it (None: unknown), for the lag metric
    highwater: int | None = None

    @property
    def topic(self) -> str:
        return self.messages[0].topic

    @property
    def partition(self) -> int:
        return self.messages[0].partition


def raw_messages(messages: Iterable[Message]) -> list[RawMessage]:
    """librdkafka messages of one fetch as `RawMessage` (a null header value becomes b"");
    records of one producer batch share their timestamp, so its datetime is built once per
    distinct value. Positional arguments in field order: this runs once per record."""
    out = []
    last_millis: int | None = None
    stamp: datetime | None = None
    for m in messages:
        kind, millis = m.timestamp()
        if kind == 0:  # TIMESTAMP_NOT_AVAILABLE
            stamp, last_millis = None, None
        elif millis != last_millis:
            last_millis = millis
            stamp = datetime.fromtimestamp(millis / 1000, tz=UTC)
        headers: Any = m.headers()  # list[tuple[str, bytes | None]] | None
        out.append(
            RawMessage(
                m.value() or b"",
                m.key(),
                tuple([(k, b"" if v is None else v) for k, v in headers]) if headers else (),
                m.topic() or "",
                m.partition() or 0,
                m.offset() or 0,
                stamp,
            )
        )
    return out


def _highwater(consumer: Consumer, key: TopicPartitionKey) -> int | None:
    _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
    return int(high) if high is not None and high >= 0 else None


@dataclass
class _Follower:
    changelog: str
    queue: asyncio.Queue[Batch]
    #: partition -> a start offset the topic's own state records (None: no opinion)
    start: Callable[[int], int | None] | None
    #: called with the partitions of the topic this worker no longer reads
    on_revoked: Callable[[set[int]], None] | None


class BatchReader(Service):
    """A librdkafka consumer reading the batch topics for the partitions Faust assigns this
    worker (see the module docstring). Added to the app as a dependency, it starts and stops
    with it.

    ``make_consumer`` builds the consumer at start (the brokers, the ``kafka_security``
    settings and ``reader_group`` as group id: `driftline.streams.kafka.clients.make_consumer`);
    ``max_records`` is the most records one fetch hands on; ``maxsize`` batches per topic may
    wait for the loop before the reader stops fetching.

    >>> import faust
    >>> app = faust.App("example", broker="kafka://127.0.0.1:9092", web_enabled=False)
    >>> table = app.Table("state", partitions=4, key_type=bytes, value_type=bytes)
    >>> reader = BatchReader(app, lambda: None, max_records=1000)
    >>> reader.follow("example.inputs", table)
    >>> reader.topics()
    ['example.inputs']
    """

    def __init__(
        self,
        app: Any,
        make_consumer: Callable[[], Consumer | None],
        *,
        max_records: int,
        maxsize: int = 4,
        poll_s: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.app = app
        self._make_consumer = make_consumer
        self.max_records = max_records
        self.maxsize = maxsize
        self.poll_s = poll_s
        self._followers: dict[str, _Follower] = {}
        #: (topic, partition) -> epoch of its assignment; only these are delivered
        self._owned: dict[TopicPartitionKey, int] = {}
        self._epoch = 0
        #: bumped by every revocation: an assignment computed before one is cancelled
        self._revocations = 0
        #: held by the thread around a fetch and by every change of the assignment
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_rebalance_complete.connect(self._on_rebalance_complete)
        app.add_dependency(self)

    # ------------------------------------------------------------------ configuration
    def follow(
        self,
        topic: str,
        table: Any,
        *,
        start: Callable[[int], int | None] | None = None,
        on_revoked: Callable[[set[int]], None] | None = None,
    ) -> None:
        """Read ``topic`` for the partitions of ``table`` that are active on this worker.

        ``start(partition)`` may name an offset the partition's own state records (the
        smaller of it and the reader group's commit is where reading starts);
        ``on_revoked(partitions)`` is told which partitions of ``topic`` moved away.
        """
        changelog = table.changelog_topic.get_topic_name()
        self._followers[topic] = _Follower(
            changelog, asyncio.Queue(maxsize=self.maxsize), start, on_revoked
        )

    def topics(self) -> list[str]:
        return sorted(self._followers)

    # ------------------------------------------------------------------ the loop's side
    async def batches(self, topic: str) -> AsyncIterator[Batch]:
        """The batches of ``topic``, in fetch order, stale ones dropped."""
        queue = self._followers[topic].queue
        while True:
            batch = await queue.get()
            if not self.stale(batch):
                yield batch

    def stale(self, batch: Batch) -> bool:
        """True when the batch's partition was revoked (or re-assigned) since its fetch: it
        will be read again from its start position, by whoever owns it then."""
        return self._owned.get((batch.topic, batch.partition)) != batch.epoch

    def owned(self) -> set[TopicPartitionKey]:
        """The (topic, partition) pairs delivered now."""
        return set(self._owned)

    async def commit(self, offsets: Mapping[TopicPartitionKey, int]) -> None:
        """Commit ``offsets`` (the next offset to read) to the reader's group. A failed commit
        is logged, not raised: the next checkpoint commits a later offset, and until then
        the records are only read again, never skipped."""
        consumer = self._consumer
        if not offsets or consumer is None:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]

        def commit() -> None:
            # Between fetches: a synchronous commit while another thread is inside
            # ``consume`` never returned (librdkafka 2.16).
            with self._lock:
                consumer.commit(offsets=tps, asynchronous=False)

        try:
            await asyncio.get_running_loop().run_in_executor(None, commit)
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: closed at shutdown
            log.warning("could not commit %d offsets (read again if lost): %s", len(tps), exc)

    # ------------------------------------------------------------------ Faust's signals
    async def _on_partitions_revoked(self, sender: Any, revoked: Any = (), **_: Any) -> None:
        self._revocations += 1
        lost = {
            (topic, tp.partition)
            for topic, f in self._followers.items()
            for tp in revoked
            if tp.topic == f.changelog
        }
        if not lost:
            return
        for key in lost:  # from now on nothing of these partitions is delivered
            self._owned.pop(key, None)
        for topic, f in self._followers.items():
            gone = {p for t, p in lost if t == topic}
            if gone and f.on_revoked is not None:
                f.on_revoked(gone)
        if self._consumer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._unassign, lost)

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        mark = self._revocations
        actives = {(tp.topic, tp.partition) for tp in self.app.assignor.assigned_actives()}
        wanted = {
            (topic, p)
            for topic, f in self._followers.items()
            for t, p in actives
            if t == f.changelog
        }
        extra = set(self._owned) - wanted  # not ours any more without a revocation (never
        if extra:  # seen with Faust's eager rebalances; handled as one)
            await self._on_partitions_revoked(
                sender,
                {_TP(self._followers[t].changelog, p) for t, p in extra},
            )
            mark = self._revocations
        new = sorted(wanted - set(self._owned))
        if not new or self._consumer is None:
            return
        starts: dict[TopicPartitionKey, int | None] = {}
        for topic, p in new:
            f = self._followers[topic]
            starts[(topic, p)] = None if f.start is None else f.start(p)
        loop = asyncio.get_running_loop()
        positions = await loop.run_in_executor(None, self._positions, starts)
        if self._revocations != mark:
            return  # a rebalance began meanwhile: its end assigns again
        await loop.run_in_executor(None, self._assign, positions, mark)

    # ------------------------------------------------------------------ the consumer
    def _positions(
        self, starts: dict[TopicPartitionKey, int | None]
    ) -> dict[TopicPartitionKey, int]:
        consumer = self._consumer
        if consumer is None:  # stopped
            return {}
        wanted = [TopicPartition(t, p) for t, p in starts]
        timeout = float(self.app.conf.broker_request_timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._lock:  # between fetches, like every call but ``consume`` itself
                    committed = consumer.committed(wanted, timeout=timeout)
                break
            except KafkaException as exc:
                # A coordinator that is moving or still loading (a broker just started or
                # restarted) answers again shortly; anything else, or for too long, fails.
                error = exc.args[0] if exc.args else None
                if (
                    not getattr(error, "retriable", lambda: False)()
                    and getattr(error, "code", lambda: None)() not in _COORDINATOR_NOT_READY
                ):
                    raise
                if time.monotonic() > deadline:
                    raise
                log.info("committed offsets not available yet (%s): asking again", error)
                time.sleep(0.5)
        out = {}
        for tp in committed:
            key = (tp.topic, tp.partition)
            known = [
                o for o in (starts[key], tp.offset if tp.offset >= 0 else None) if o is not None
            ]
            out[key] = min(known) if known else OFFSET_BEGINNING
        return out

    def _assign(self, positions: dict[TopicPartitionKey, int], mark: int) -> None:
        consumer = self._consumer
        with self._lock:
            if self._revocations != mark or consumer is None:
                return
            fresh = [(k, o) for k, o in positions.items() if k not in self._owned]
            if not fresh:
                return
            consumer.incremental_assign([TopicPartition(t, p, o) for (t, p), o in fresh])
            self._epoch += 1
            for key, offset in fresh:
                self._owned[key] = self._epoch
                log.info("reading %s[%d] from offset %d", key[0], key[1], offset)

    def _unassign(self, lost: set[TopicPartitionKey]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        with self._lock:
            current = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            gone = [TopicPartition(t, p) for t, p in sorted(lost & current)]
            if gone:
                consumer.incremental_unassign(gone)

    # ------------------------------------------------------------------ the thread
    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = self._make_consumer()
        if self._consumer is None:
            return
        self._thread = threading.Thread(target=self._run, name="batch-reader", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self._halt.set()
        thread, consumer = self._thread, self._consumer
        self._consumer = None  # commits from now on are left to the next owner
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._halt.is_set():
                self._fetch_once(consumer)
        except Exception as exc:
            log.exception("the batch reader stopped")
            if self._loop is not None and not self._halt.is_set():
                asyncio.run_coroutine_threadsafe(self.crash(exc), self._loop)

    def _fetch_once(self, consumer: Consumer) -> None:
        with self._lock:
            owned = dict(self._owned)  # the epochs this fetch is delivered under
            messages = consumer.consume(self.max_records, self.poll_s) if owned else []
            keys = {(m.topic() or "", m.partition() or 0) for m in messages if not m.error()}
            highs = {key: _highwater(consumer, key) for key in keys}
        if not owned:
            self._halt.wait(self.poll_s)
            return
        by_partition: dict[TopicPartitionKey, list[Message]] = {}
        for m in messages:
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("batch reader: %s", error)
                continue
            by_partition.setdefault((m.topic() or "", m.partition() or 0), []).append(m)
        for key, fetched in by_partition.items():
            epoch = owned.get(key)
            if epoch is not None:
                self._hand(key[0], Batch(epoch, raw_messages(fetched), highs.get(key)))

    def _hand(self, topic: str, batch: Batch) -> None:
        """Put ``batch`` on its topic's queue, waiting while the queue is full."""
        assert self._loop is not None
        queue = self._followers[topic].queue
        future = asyncio.run_coroutine_threadsafe(queue.put(batch), self._loop)
        while not self._halt.is_set():
            try:
                future.result(timeout=_HAND_WAIT_S)
                return
            except TimeoutError:
                continue
        future.cancel()
