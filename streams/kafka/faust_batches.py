"""Whole fetches of a topic, handed to a Faust agent as one micro-batch.

Faust delivers every message on its own: per message it wraps the record, decodes it, puts
it in a queue, wakes the stream and acknowledges it — several asyncio tasks and loop turns
each, which caps an agent at roughly ten thousand messages per second on one core, far below
what the monitor's vectorized step can take. `BatchApp` keeps everything Faust does for a
worker (group membership, co-partitioned assignment, table recovery, flow control during
rebalances) and changes one thing: records of the topics registered with `deliver_batches`
skip the per-message path. Each fetch of such a topic partition becomes one `Batch` of
`RawMessage` sent to an in-memory channel, which an ordinary agent iterates.

The hook is `Consumer._wait_next_records`, the single place where Faust's fetcher gets a
record map from the client: batch topics are taken out there and the rest goes on to
Faust's per-message path unchanged. Offsets of batch topics are never acked by Faust (the
topic must be declared with ``acks=False``); the agent commits them itself.

Why this hook and not a public path (issue: Faust and aiokafka internals). Measured side by
side on one run (``benchmarks/bench_streams_ingest.py``, JSON events, 2 cores): a bare agent
on Faust's public per-message stream (``stream.noack().take``) reaches ~12k events/s, one on
this hook ~168k/s, the raw librdkafka consume+decode floor ~174k/s. ``stream.take`` keeps
Faust's per-message cost (the batch is assembled *after* it), so it would cap JSON ingest at
a thirteenth of today's; Arrow batches from producers would hide that for high volume but a
JSON producer is the default one. A librdkafka consumer for ``{p}.inputs`` that follows the
group's assignment would need its own membership or manual assignment from Faust's
rebalance callbacks, and then a second offset-commit path next to the table's changelog
recovery — exactly the interplay the SIGKILL, broker-restart and second-worker tests
guard, with no time left to prove it. So the hook stays, and the private names it touches
are few and pinned together with the versions they were proven on (faust-streaming 0.15.x,
aiokafka 0.14.x, see pyproject): `Consumer._wait_next_records` (the hook), ``_read_offset``
(Faust's read position, so its livelock check sees progress), ``_fetch_max_wait_ms`` (below),
the channel's ``_queue`` (below) and ``Consumer._commit`` (Faust's public commit covers acked
events only). Everything else — `Consumer.seek`, ``flow_active``, the generation — is public.

Records fetched but not delivered. The client's position is past a fetch once it returns, so
records of a partition that was paused, or whose flow stopped, while an earlier partition of
the same fetch was being handled would be skipped for good; the hook seeks such a partition
back to its first undelivered record (``tests/kafka/test_faust_batches.py``). After a
rebalance it does nothing: Faust seeks every partition back to its committed offset.

A batch carries the consumer generation it was fetched in. After a rebalance Faust seeks
each partition back to its committed offset, so a batch from an older generation may hold
records of a partition this worker no longer owns: agents must drop it (`Batch.stale`). The
channel is never emptied behind the agent's back: Faust clears its own channels whenever
flow resumes, but a fetch can land between the seek that ends a table recovery and that
resume, and clearing it would skip those records for good (the SIGKILL test caught exactly
that: the first thousand rows after a restart went missing).

>>> from driftline.streams.monitor.messages import RawMessage
>>> Batch(0, (RawMessage(b"{}", topic="p.inputs", partition=3, offset=9),)).partition
3
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka

from driftline.streams.monitor.messages import RawMessage

__all__ = ["FETCH_MAX_WAIT_MS", "Batch", "BatchApp", "deliver_batches", "raw_message"]

#: Longest wait of the broker for data before it answers a fetch (Faust hard-codes 1500 ms).
#: One fetch request carries every partition a worker reads from a broker, and a partition with
#: records still buffered is left out of it; so with idle partitions in the request (labels, the
#: table's changelog) the input's next fetch waited behind them for the whole 1.5 s.
FETCH_MAX_WAIT_MS = 100

BatchHandler = Callable[["Batch"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Batch:
    """The records of one topic partition from one fetch, in offset order."""

    generation: int
    messages: Sequence[RawMessage]

    @property
    def partition(self) -> int:
        return self.messages[0].partition

    def stale(self, app: faust.App) -> bool:
        """True when a rebalance happened after the fetch: the records may not be ours."""
        return self.generation != app.consumer_generation_id


def raw_message(record: Any) -> RawMessage:
    """An aiokafka ``ConsumerRecord`` as a `RawMessage` (a null header value becomes b"").

    >>> from aiokafka.structs import ConsumerRecord
    >>> r = ConsumerRecord("p.inputs", 2, 41, 1767225600000, 0, None, b"{}", None, 0, 2,
    ...                    [("content-type", b"application/json"), ("trace", None)])
    >>> m = raw_message(r)
    >>> m.partition, m.offset, m.headers[1], m.timestamp.isoformat()
    (2, 41, ('trace', b''), '2026-01-01T00:00:00+00:00')
    """
    millis, headers = record.timestamp, record.headers
    # Positional arguments, in field order: this runs once per consumed record.
    return RawMessage(
        record.value or b"",
        record.key,
        tuple([(k, b"" if v is None else v) for k, v in headers]) if headers else (),
        record.topic,
        record.partition,
        record.offset,
        None if millis is None else datetime.fromtimestamp(millis / 1000, tz=UTC),
    )


def raw_messages(records: Any) -> list[RawMessage]:
    """`raw_message` of every record of a fetch; records of one producer batch share their
    timestamp, so its datetime is built once per distinct value.

    >>> from aiokafka.structs import ConsumerRecord
    >>> rs = [ConsumerRecord("p.inputs", 0, i, 1767225600000, 0, None, b"{}", None, 0, 2, [])
    ...       for i in range(3)]
    >>> ms = raw_messages(rs)
    >>> [m.offset for m in ms], ms[0].timestamp is ms[2].timestamp, ms[1] == raw_message(rs[1])
    ([0, 1, 2], True, True)
    """
    out = []
    last_millis: int | None = None
    stamp: datetime | None = None
    for record in records:
        millis, headers = record.timestamp, record.headers
        if millis != last_millis:
            last_millis = millis
            stamp = None if millis is None else datetime.fromtimestamp(millis / 1000, tz=UTC)
        out.append(
            RawMessage(
                record.value or b"",
                record.key,
                tuple([(k, b"" if v is None else v) for k, v in headers]) if headers else (),
                record.topic,
                record.partition,
                record.offset,
                stamp,
            )
        )
    return out


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher at start
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, handing whole fetches of the app's batch topics on."""

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        handlers: dict[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        if not records or not handlers:
            return records, active
        generation = self.app.consumer_generation_id
        rest: dict[Any, Any] = {}
        for tp, fetched in records.items():
            handler = handlers.get(tp.topic)
            if handler is None:
                rest[tp] = fetched
                continue
            if not fetched:
                continue
            # Like Faust's own loop: nothing is delivered once the flow stopped, a rebalance
            # began or the partition was paused — possibly by the handler of the partition
            # before, in the middle of this fetch.
            rebalanced = generation != self.app.consumer_generation_id
            if not rebalanced and self.flow_active and (active is None or tp in active):
                await handler(Batch(generation, raw_messages(fetched)))
                self._read_offset[tp] = fetched[-1].offset
            elif not rebalanced:
                # The client's position is already past these records: without a seek they
                # would be skipped for good. (After a rebalance Faust seeks every partition
                # back to its committed offset itself.)
                await self._seek_back(tp, fetched[0].offset)
        return rest, active

    async def _seek_back(self, tp: Any, offset: int) -> None:
        # Revoked meanwhile: its new owner reads it from the committed offset.
        with contextlib.suppress(IllegalStateError):
            await self.seek(tp, offset)


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `BatchConsumer`."""

    Consumer = BatchConsumer


class _BatchChannel(faust.Channel):
    """An in-memory channel whose queue survives flow resumes (see the module docstring)."""

    @property
    def queue(self) -> Any:
        if self._queue is None:
            maxsize = self.maxsize or self.app.conf.stream_buffer_maxsize
            self._queue = self.app.FlowControlQueue(maxsize=maxsize, clear_on_resume=False)
        return self._queue


class BatchApp(faust.App):
    """A `faust.App` whose consumer can deliver whole fetches (see `deliver_batches`).

    >>> app = BatchApp("example", broker="kafka://127.0.0.1:9092", web_enabled=False)
    >>> inputs = app.topic("example.inputs", value_serializer="raw", acks=False)
    >>> batches = deliver_batches(app, inputs)  # an agent iterates this channel
    >>> sorted(app.batch_handlers)
    ['example.inputs']
    >>> deliver_batches(app, app.topic("example.labels"))
    Traceback (most recent call last):
    ...
    ValueError: deliver_batches needs a topic declared with acks=False: its agent commits ...
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: topic name -> the coroutine each fetch of it goes to
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)


def deliver_batches(app: BatchApp, topic: Any, maxsize: int = 4) -> Any:
    """Subscribe ``app`` to ``topic`` and return a channel of its fetches as `Batch` values.

    ``topic`` must be declared with ``acks=False``: nothing acks its records, so the agent
    reading the channel commits offsets itself. ``maxsize`` batches may wait in the channel;
    beyond that the fetcher waits too, which is the back-pressure on the broker.
    """
    if topic.acks:
        raise ValueError(
            "deliver_batches needs a topic declared with acks=False: its agent commits the "
            f"offsets of {list(topic.topics)} itself"
        )
    channel = _BatchChannel(app, maxsize=maxsize)

    async def handle(batch: Batch) -> None:
        await channel.send(value=batch)

    app.topics.add(topic)  # the conductor subscribes; the consumer delivers
    for name in topic.topics:
        app.batch_handlers[name] = handle
    return channel
