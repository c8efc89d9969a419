"""The Faust app of a pipeline: thin agents around `MonitorStep`.

``{p}.inputs``  → ``monitor`` agent: one micro-batch per fetch → `MonitorStep.process`
                   → ``{p}.dlq`` / ``{p}.drift`` / ``{p}.ood``
``{p}.labels``  → ``labels`` agent: `MonitorStep.process_labels` → ``{p}.dlq``
``{p}.model-versions`` → ``model_versions`` agent: `MonitorStep.on_model_version`

Inputs and labels skip Faust's per-message path: each fetch of a partition reaches its agent
as one `Batch` (see `driftline.streams.kafka.faust_batches`), which is what lets a worker keep up
with the
vectorized step. Faust still runs the worker: group membership, co-partitioned assignment,
table recovery, and flow control during rebalances.

Crash safety. Every ``CHECKPOINT_INTERVAL_S`` the checkpointer archives the pending rows (one
Parquet segment), writes the step state of each touched partition into the ``monitor-state``
table — a Faust table, so a changelog partition next to the input partition backs it —,
flushes the producer so the changelog records are on the broker, and only then commits the
input offsets the state covers and the label offsets whose labels are archived. A worker
killed with SIGKILL restarts from that commit: the table is recovered from its changelog, and
rows the state already covers are skipped (the state remembers the offsets it has folded in),
so nothing is lost and nothing is counted twice.

Faust never acks inputs or labels (their topics are declared with ``acks=False``): Faust acks —
and so commits — messages it *skips* while a rebalance or a table recovery is under way; with
acks on, a restart could move the committed offset past rows that were never processed (the
integration test that SIGKILLs a worker caught exactly that). With our own commits, the offset
Faust seeks to after every rebalance is always one the state covers.

Every worker also re-reads the champion from the lifecycle store every
``REFERENCE_POLL_S`` seconds, because with several workers in one consumer group only the
worker that owns the ``{p}/champion`` key's partition receives the ModelVersionEvent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from driftline.config.settings import Settings
from driftline.schemas import (
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    DeadLetter,
    ModelVersionEvent,
    SchemaError,
)
from driftline.streams.kafka.clients import DLQ_MAX_MESSAGE_BYTES, faust_credentials
from driftline.streams.kafka.faust_batches import Batch, BatchApp, deliver_batches
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.step import MonitorOutput, MonitorStep

if TYPE_CHECKING:
    from driftline.lifecycle_store import LifecycleStore

__all__ = ["CHECKPOINT_INTERVAL_S", "REFERENCE_POLL_S", "Checkpointer", "commit", "create_app"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
SESSION_TIMEOUT_S = 10.0
REFERENCE_POLL_S = 5.0
STATE_TABLE = "monitor-state"
_JSON_HEADERS = [(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())]


def app_id(pipeline: str) -> str:
    """The Faust app id, which is also the consumer group of the pipeline's monitor."""
    return f"driftline-monitor-{pipeline}"


async def commit(app: Any, offsets: dict[tuple[str, int], int]) -> None:
    """Flush what was produced (changelog, DLQ), then commit ``offsets`` of the consumer."""
    from faust.types import TP

    await app.producer.flush()
    if offsets:
        # Faust's public commit covers only acked events, and acks are off for the input and
        # the labels (see the module docstring), so commit through the consumer's own call.
        await app.consumer._commit({TP(t, p): o for (t, p), o in offsets.items()})


class Checkpointer:
    """Saves step state into the Faust table, then commits the offsets it covers."""

    def __init__(
        self, app: Any, step: MonitorStep, table: Any, metrics: MonitorMetrics | None
    ) -> None:
        self.app = app
        self.step = step
        self.table = table
        self.metrics = metrics
        #: input partition -> its topic, for partitions with rows since the last save
        self.pending: dict[int, str] = {}
        #: (labels topic, partition) -> the next offset to commit once labels are archived
        self.labels: dict[tuple[str, int], int] = {}
        self.restored: set[int] = set()
        self.last = time.monotonic()

    @staticmethod
    def key(partition: int) -> bytes:
        return f"partition-{partition}".encode()

    def restore(self, partition: int) -> None:
        """Load the saved state of ``partition`` unless this worker restored it already."""
        if partition in self.restored:
            return
        data = self.table.get(self.key(partition))
        if data:
            self.step.restore(data, partitions=[partition])
            log.info("restored monitor state of partition %d (%d bytes)", partition, len(data))
        self.restored.add(partition)

    def processed(self, batch: Batch) -> None:
        """``batch`` went through the step: its offsets are due at the next save."""
        last = batch.messages[-1]
        self.pending[last.partition] = last.topic

    def labelled(self, batch: Batch) -> None:
        """``batch`` of labels went through the step."""
        last = batch.messages[-1]
        self.labels[(last.topic, last.partition)] = last.offset + 1

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: their state will come back from the table."""
        self.step.drop_partitions(partitions)
        self.restored -= partitions
        for p in partitions:
            self.pending.pop(p, None)
        self.labels = {k: v for k, v in self.labels.items() if k[1] not in partitions}

    def due(self) -> bool:
        waiting = self.pending or self.labels
        return bool(waiting) and time.monotonic() - self.last >= CHECKPOINT_INTERVAL_S

    async def save(self) -> None:
        pending, self.pending = self.pending, {}
        self.last = time.monotonic()
        started = time.perf_counter()
        offsets = {}
        for partition, topic in sorted(pending.items()):
            key, value = self.key(partition), self.step.state_bytes([partition])
            # The changelog partition of the input partition: state stays co-partitioned with
            # its input, so whoever owns the input after a rebalance recovers its state.
            self.table.send_changelog(partition, key, value)
            self.table.data[key] = value
            nxt = self.step.next_offset(topic, partition)
            if nxt is not None:
                offsets[(topic, partition)] = nxt
        if not self.step.holds_labels:  # labels that came first are archived with the rows
            offsets.update(self.labels)
            self.labels = {}
        await commit(self.app, offsets)
        if self.metrics is not None and pending:
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)


def create_app(
    settings: Settings,
    store: LifecycleStore | None = None,
    metrics: MonitorMetrics | None = None,
) -> BatchApp:
    """The Faust app monitoring pipeline ``settings.pipeline`` (see the module docstring)."""
    from driftline.lifecycle_store import LifecycleStore

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
    app = BatchApp(
        app_id(settings.pipeline),
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
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
        # A SIGKILLed worker's partitions move to the others (or to its restart) after this.
        broker_session_timeout=SESSION_TIMEOUT_S,
        # One fetch is one micro-batch.
        broker_max_poll_records=settings.batch_size,
        table_standby_replicas=0,
        # Shutdown must not wait for Faust acks: the input's offsets are committed by the
        # checkpoint, not by acks (see the module docstring).
        stream_wait_empty=False,
        web_enabled=False,
    )

    def topic(name: str, partitions: int | None = None, acks: bool = True) -> Any:
        # Raw bytes in and out: a bad message reaches the DLQ exactly as it was sent.
        return app.topic(
            name, partitions=partitions, value_serializer="raw", key_serializer="raw", acks=acks
        )

    # No Faust acks on the inputs and labels: their offsets are committed explicitly, once
    # what they carry is archived (see the module docstring).
    inputs = topic(topics.inputs, settings.partitions, acks=False)
    labels = topic(topics.labels, settings.partitions, acks=False)
    versions = topic(topics.model_versions, settings.partitions)
    dlq, drift, ood = topic(topics.dlq), topic(topics.drift), topic(topics.ood)
    table = app.Table(STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes)
    ckpt = Checkpointer(app, step, table, metrics)

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

    @app.agent(deliver_batches(app, inputs), name="monitor")
    async def monitor(stream: Any) -> None:
        async for batch in stream:
            if batch.stale(app):  # fetched before a rebalance: Faust seeks back to the commit
                continue
            ckpt.restore(batch.partition)
            started = time.perf_counter()
            out = step.process(batch.messages)
            await publish(out)
            ckpt.processed(batch)
            if metrics is not None:
                metrics.observe_batch(out, batch.messages, time.perf_counter() - started)
                metrics.observe_lag(app, batch.messages[-1:])  # one partition per batch
            if ckpt.due():
                await ckpt.save()

    @app.agent(deliver_batches(app, labels), name="labels")
    async def label_agent(stream: Any) -> None:
        async for batch in stream:
            if batch.stale(app):
                continue
            out = step.process_labels(batch.messages)
            await send_dead_letters(out.dead_letters)
            ckpt.labelled(batch)
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

    @app.timer(CHECKPOINT_INTERVAL_S)
    async def checkpoint_when_idle() -> None:
        if ckpt.due():
            await ckpt.save()

    @app.timer(REFERENCE_POLL_S)
    async def poll_champion() -> None:
        step.sync_reference()

    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        # Rows of a revoked partition since the last checkpoint go to its new owner (their
        # offsets were not committed); drop the partition's state, which the table brings back.
        mine = {tp.partition for tp in revoked if tp.topic == topics.inputs}
        if mine:
            ckpt.forget(mine)

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    return app
