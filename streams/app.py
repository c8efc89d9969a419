"""The Faust app of a pipeline: thin agents around `MonitorStep`.

``{p}.inputs``  → ``monitor`` agent: micro-batches (``noack_take``) → `MonitorStep.process`
                   → ``{p}.dlq`` / ``{p}.drift`` / ``{p}.ood``
``{p}.labels``  → ``labels`` agent: `MonitorStep.process_labels` → ``{p}.dlq``
``{p}.model-versions`` → ``model_versions`` agent: `MonitorStep.on_model_version`

Crash safety. Input events are *not* acknowledged when a batch is processed. Every
``CHECKPOINT_INTERVAL_S`` the agent archives the pending rows (one Parquet segment), writes
the step state of each touched partition into the ``monitor-state`` table — a Faust table,
so a changelog topic partition next to the input partition backs it — and only then acks
the events. Faust commits acked offsets only after flushing its producer (the changelog
writes), so a committed offset is always covered by archived rows and a saved state. A
worker killed with SIGKILL restarts from the last commit: the table is recovered from its
changelog, re-delivered rows are archived again (deduplicated by event id on read) and
skipped by the detectors (the state remembers the offsets it has folded in).

The step's state, not the consumer group's committed offset, says where a partition
resumes. Faust acks (and so commits) messages it skips while a rebalance or a table recovery
is under way, which can move the committed offset past rows that were never processed; so
when the first message the agent sees of a partition lies beyond the state's next offset, or
a partition sits idle behind its end offset, the agent seeks the consumer back to the state's
next offset (once per offset, so a genuine gap such as a transaction marker is accepted).

Every worker also re-reads the champion from the lifecycle store every
``REFERENCE_POLL_S`` seconds, because with several workers in one consumer group only the
worker that owns the ``{p}/champion`` key's partition receives the ModelVersionEvent.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from schemas import (
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    DeadLetter,
    ModelVersionEvent,
    SchemaError,
)
from streams.kafka_io import DLQ_MAX_MESSAGE_BYTES
from streams.messages import RawMessage
from streams.metrics import MonitorMetrics
from streams.monitor import MonitorOutput, MonitorStep
from streams.settings import Settings

if TYPE_CHECKING:
    import faust

    from lifecycle_store import LifecycleStore

__all__ = ["CHECKPOINT_INTERVAL_S", "REFERENCE_POLL_S", "Checkpointer", "create_app"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
IDLE_RESEEK_S = 5.0
REFERENCE_POLL_S = 5.0
STATE_TABLE = "monitor-state"
_JSON_HEADERS = [(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())]


def app_id(pipeline: str) -> str:
    """The Faust app id, which is also the consumer group of the pipeline's monitor."""
    return f"driftline-monitor-{pipeline}"


def to_raw_message(message: Any) -> RawMessage:
    """A Faust/aiokafka message as a `RawMessage`."""
    from datetime import UTC, datetime

    headers = message.headers or ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return RawMessage(
        value=message.value or b"",
        key=message.key,
        headers=tuple((str(k), bytes(v) if v is not None else b"") for k, v in pairs),
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=datetime.fromtimestamp(message.timestamp, tz=UTC) if message.timestamp else None,
    )


class Checkpointer:
    """Saves step state into the Faust table, acks the events it covers, and keeps each
    input partition reading from where the state says (see the module docstring)."""

    def __init__(self, step: MonitorStep, table: Any, metrics: MonitorMetrics | None) -> None:
        self.step = step
        self.table = table
        self.metrics = metrics
        self.stream: Any = None
        self.pending: list[Any] = []
        self.restored: set[int] = set()
        self.sought: set[tuple[int, int]] = set()
        self.last = time.monotonic()
        self.active: dict[int, float] = {}

    @staticmethod
    def key(partition: int) -> bytes:
        return f"partition-{partition}".encode()

    def restore(self, partitions: set[int]) -> None:
        """Load the saved state of partitions this worker has not restored yet."""
        for p in sorted(partitions - self.restored):
            data = self.table.get(self.key(p))
            if data:
                self.step.restore(data, partitions=[p])
                log.info("restored monitor state of partition %d (%d bytes)", p, len(data))
            self.restored.add(p)

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: their state will come back from the table."""
        self.step.drop_partitions(partitions)
        self.restored -= partitions
        self.pending = [e for e in self.pending if e.message.partition not in partitions]

    def admit(self, events: Sequence[Any]) -> tuple[list[Any], dict[int, int]]:
        """The events that continue their partition without a gap, and the offsets to seek
        back to for partitions where messages were skipped."""
        kept: list[Any] = []
        seeks: dict[int, int] = {}
        expected: dict[int, int | None] = {}
        now = time.monotonic()
        for event in events:
            m = event.message
            p = m.partition
            if p in seeks:
                continue
            if p not in expected:
                expected[p] = self.step.next_offset(m.topic, p)
            want = expected[p]
            if want is not None and m.offset > want and (p, want) not in self.sought:
                self.sought.add((p, want))
                seeks[p] = want
                continue
            kept.append(event)
            expected[p] = max(m.offset + 1, want or 0)
            self.active[p] = now
        return kept, seeks

    def behind(self, topic: str, partitions: set[int], highwater: Any) -> dict[int, int]:
        """Idle partitions whose end offset lies beyond the state: seek them back."""
        seeks: dict[int, int] = {}
        now = time.monotonic()
        for p in partitions & self.restored:
            want = self.step.next_offset(topic, p)
            end = highwater(p)
            idle = now - self.active.get(p, 0.0) > IDLE_RESEEK_S
            stuck = want is not None and end is not None and want < end and idle
            if stuck and want is not None and (p, want) not in self.sought:
                self.sought.add((p, want))
                seeks[p] = want
        return seeks

    def due(self) -> bool:
        return bool(self.pending) and time.monotonic() - self.last >= CHECKPOINT_INTERVAL_S

    async def save(self) -> None:
        from faust.streams import _current_event

        events, self.pending = self.pending, []
        self.last = time.monotonic()
        if not events:
            return
        last_of: dict[int, Any] = {}
        for event in events:
            last_of[event.message.partition] = event
        started = time.perf_counter()
        for partition, event in sorted(last_of.items()):
            # A table write goes to the changelog partition of the current event; point it at
            # an event of this partition so state stays co-partitioned with its input.
            token = _current_event.set(weakref.ref(event))
            try:
                self.table[self.key(partition)] = self.step.state_bytes([partition])
            finally:
                _current_event.reset(token)
        for event in events:
            await self.stream.ack(event)
        if self.metrics is not None:
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)


def create_app(
    settings: Settings,
    store: LifecycleStore | None = None,
    metrics: MonitorMetrics | None = None,
) -> faust.App:
    """The Faust app monitoring pipeline ``settings.pipeline`` (see the module docstring)."""
    import faust

    from lifecycle_store import LifecycleStore

    topics = settings.topics
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = LifecycleStore.open(
            settings.store_url.get_secret_value(), artifacts=settings.artifacts
        )
    step = MonitorStep(
        settings.config,
        store,
        pipeline=settings.pipeline,
        partitions=settings.partitions,
        emit_ood=settings.emit_ood,
        max_message_bytes=settings.max_message_bytes,
        # Rows wait for the checkpoint, which archives them as one segment.
        archive_rows=max(50_000, settings.batch_size),
    )
    app = faust.App(
        app_id(settings.pipeline),
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        datadir=str(settings.state_dir / settings.pipeline),
        store="memory://",
        topic_partitions=settings.partitions,
        producer_acks=-1,
        producer_max_request_size=DLQ_MAX_MESSAGE_BYTES,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=max(4 * 1024 * 1024, 2 * settings.max_message_bytes),
        broker_commit_interval=CHECKPOINT_INTERVAL_S,
        broker_max_poll_records=max(500, settings.batch_size),
        stream_buffer_maxsize=max(4096, 4 * settings.batch_size),
        table_standby_replicas=0,
        web_enabled=False,
    )
    app.step = step  # type: ignore[attr-defined]

    def topic(name: str, partitions: int | None = None) -> Any:
        # Raw bytes in and out: a bad message reaches the DLQ exactly as it was sent.
        return app.topic(name, partitions=partitions, value_serializer="raw", key_serializer="raw")

    inputs = topic(topics.inputs, settings.partitions)
    labels = topic(topics.labels, settings.partitions)
    versions = topic(topics.model_versions, settings.partitions)
    dlq, drift, ood = topic(topics.dlq), topic(topics.drift), topic(topics.ood)
    table = app.Table(STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes)
    ckpt = Checkpointer(step, table, metrics)
    app.checkpointer = ckpt  # type: ignore[attr-defined]

    async def publish(out: MonitorOutput) -> None:
        await send_dead_letters(out.dead_letters)
        for event in out.drift_events:
            await drift.send(
                key=settings.pipeline.encode(), value=event.to_json(), headers=_JSON_HEADERS
            )
            log.warning(
                "drift %s: statistic %.4g > %.4g", event.drift_id, event.statistic, event.threshold
            )
        for flag in out.ood_flags:
            await ood.send(key=flag.event_id.encode(), value=flag.to_json(), headers=_JSON_HEADERS)

    async def send_dead_letters(dead: Sequence[DeadLetter]) -> None:
        for letter in dead:
            await dlq.send(value=letter.to_json(), headers=_JSON_HEADERS)

    @app.agent(inputs, name="monitor")
    async def monitor(stream: Any) -> None:
        ckpt.stream = stream
        async for batch in stream.noack_take(settings.batch_size, within=settings.batch_timeout_s):
            ckpt.restore({e.message.partition for e in batch})
            events, seeks = ckpt.admit(batch)
            await seek(seeks)
            messages = [to_raw_message(e.message) for e in events]
            started = time.perf_counter()
            out = step.process(messages)
            await publish(out)
            ckpt.pending.extend(events)
            if metrics is not None:
                metrics.observe_batch(out, messages, time.perf_counter() - started)
                metrics.observe_lag(app, messages)
            if ckpt.due():
                await ckpt.save()

    @app.agent(labels, name="labels")
    async def label_agent(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.batch_timeout_s
        ):
            out = step.process_labels([to_raw_message(e.message) for e in events])
            await send_dead_letters(out.dead_letters)
            if metrics is not None:
                metrics.observe_labels(out)

    @app.agent(versions, name="model_versions")
    async def version_agent(stream: Any) -> None:
        async for value in stream:
            try:
                event = ModelVersionEvent.from_json(value)
            except SchemaError as exc:
                log.error("ignoring a bad ModelVersionEvent on %s: %s", topics.model_versions, exc)
                continue
            step.on_model_version(event)

    async def seek(seeks: dict[int, int]) -> None:
        from faust.types import TP

        for partition, offset in seeks.items():
            log.warning(
                "partition %d: messages from offset %d were skipped by the consumer; "
                "seeking back to them",
                partition,
                offset,
            )
            await app.consumer.seek(TP(topics.inputs, partition), offset)

    @app.timer(CHECKPOINT_INTERVAL_S)
    async def checkpoint_when_idle() -> None:
        if ckpt.stream is None:
            return
        if ckpt.due():
            await ckpt.save()
        if app.rebalancing or not cast(Any, app.tables).recovery.completed.is_set():
            return
        from faust.types import TP

        mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.inputs}
        ckpt.restore(mine)
        await seek(
            ckpt.behind(topics.inputs, mine, lambda p: app.consumer.highwater(TP(topics.inputs, p)))
        )

    @app.timer(REFERENCE_POLL_S)
    async def poll_champion() -> None:
        step.sync_reference()

    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        # Unacked events of a revoked partition go to its new owner (their offsets were not
        # committed); drop them and the partition's state, which the table brings back.
        mine = {tp.partition for tp in revoked if tp.topic == topics.inputs}
        if mine:
            ckpt.forget(mine)

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    return app
