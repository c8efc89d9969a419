"""The Faust app of a pipeline: a thin shell feeding `MonitorLoop` from Kafka.

``{p}.inputs``  → batch task (`BatchReader`): one batch per fetch of a partition →
`MonitorLoop.inputs`
``{p}.labels``  → batch task: `MonitorLoop.labels`
``{p}.model-versions`` → ``model_versions`` agent (Faust): `MonitorStep.on_model_version`
``{p}.detector-summaries`` → batch task: `MonitorLoop.summaries` (pooled detection)

With pooled detection the monitor publishes each partition's detector summaries instead of
running a chart; the summaries topic has one partition and follows the one-partition
``pipeline-chart`` table, which the Faust assignor gives to exactly one worker: that worker
reads the topic, merges the summaries into the pipeline's one chart and publishes its
DriftEvents. A rebalance moves the table, and so the topic, together.

What happens to a batch — the step, where its outputs go, when state is saved and which
offsets are committed — lives in `driftline.streams.loops.monitor`; this module is the Kafka
side of `driftline.streams.transport`: `FaustTransport` produces through Faust's producer,
keeps step state in the ``monitor-state`` table (its changelog partition sits next to the
input partition, so whoever owns the input after a rebalance recovers its state) and commits
after a producer flush.

Inputs, labels and summaries skip Faust's per-message path: a librdkafka consumer inside the
worker (`driftline.streams.kafka.faust_batches.BatchReader`, which also argues why that and
not `stream.take`) reads the partitions that follow this worker's active partitions of the
state tables and hands each fetch of a partition to its task as one `Batch`. Faust still runs
the worker: group membership, co-partitioned assignment, table recovery.

Faust never sees those records, so it never acks — and so never commits — any of them (Faust
acks the messages it *skips* while a rebalance or a table recovery is under way: with its acks
a restart could move the committed offset past rows that were never processed, which the
integration test that SIGKILLs a worker caught). The loop commits their offsets itself, to
the reader's group, once what they carry is durable; inputs start again at the offset the
recovered state records, which is never past what it covers.

Every worker also re-reads the champion from the lifecycle store every
``REFERENCE_POLL_S`` seconds, because with several workers in one consumer group only the
worker that owns the ``{p}/champion`` key's partition receives the ModelVersionEvent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from driftline.config.settings import Settings
from driftline.schemas import ModelVersionEvent, SchemaError
from driftline.streams.exceptions import ConfigError
from driftline.streams.kafka.clients import (
    DLQ_MAX_MESSAGE_BYTES,
    faust_credentials,
    make_consumer,
)
from driftline.streams.kafka.faust_batches import (
    FETCH_MAX_WAIT_MS,
    Batch,
    BatchReader,
    reader_group,
)
from driftline.streams.loops.monitor import CHECKPOINT_INTERVAL_S, POOL_STATE_KEY, MonitorLoop
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import RegistryDecoder, RegistryUnavailable
from driftline.streams.monitor.step import MonitorStep, saved_offsets
from driftline.streams.transport import Offsets, Record

if TYPE_CHECKING:
    from driftline.lifecycle_store import LifecycleStore

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "REFERENCE_POLL_S",
    "FaustTransport",
    "changelog_topics",
    "create_app",
]

log = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 10.0
REFERENCE_POLL_S = 5.0
STATE_TABLE = "monitor-state"
POOL_TABLE = "pipeline-chart"
REGISTRY_RETRY_MAX_S = 30.0


def app_id(pipeline: str) -> str:
    """The Faust app id, which is also the consumer group of the pipeline's monitor."""
    return f"driftline-monitor-{pipeline}"


class FaustTransport:
    """`driftline.streams.transport.Transport` on a Faust app, its state tables and the
    `BatchReader` that reads the batch topics (and commits their offsets)."""

    def __init__(self, app: Any, reader: BatchReader, table: Any, pool_table: Any = None) -> None:
        self.app = app
        self.reader = reader
        self.table = table
        self.pool_table = pool_table
        self._topics: dict[str, Any] = {}
        #: key -> state saved by this worker since its partition was assigned. The table's
        #: own view holds what recovery read; an active table partition does not read its
        #: changelog again, so what this worker writes is kept here.
        self._saved: dict[bytes, bytes] = {}
        self._pool_saved: bytes | None = None

    async def send(self, records: Sequence[Record]) -> None:
        for r in records:
            topic = self._topics.get(r.topic)
            if topic is None:
                # Raw bytes out: a bad message reaches the DLQ exactly as it was sent.
                topic = self._topics[r.topic] = self.app.topic(
                    r.topic, value_serializer="raw", key_serializer="raw"
                )
            await topic.send(key=r.key, value=r.value, headers=list(r.headers))

    async def commit(self, offsets: Offsets) -> None:
        await self.app.producer.flush()  # the changelog and every output, before the offsets
        await self.reader.commit(offsets)

    def save_state(self, partition: int, key: bytes, value: bytes) -> None:
        # The changelog partition of the input partition: state stays co-partitioned with its
        # input. ``table[key] = value`` would pick the partition of the current Faust event,
        # and a batch task has none.
        self.table.send_changelog(partition, key, value)
        self._saved[key] = value

    def load_state(self, key: bytes) -> bytes | None:
        data: bytes | None = self._saved.get(key)
        if data is None:
            data = self.table.get(key)
        return data

    def revoked(self, keys: Sequence[bytes]) -> None:
        """Their partitions moved away: when they come back, recovery has the newest state."""
        for key in keys:
            self._saved.pop(key, None)

    def save_pool_state(self, value: bytes) -> None:
        if self.pool_table is None:
            raise RuntimeError("this transport has no table for the pipeline chart")
        self.pool_table.send_changelog(0, POOL_STATE_KEY, value)
        self._pool_saved = value

    def load_pool_state(self) -> bytes | None:
        if self.pool_table is None:
            return None
        if self._pool_saved is not None:
            return self._pool_saved
        data: bytes | None = self.pool_table.get(POOL_STATE_KEY)
        return data

    def pool_revoked(self) -> None:
        self._pool_saved = None


def changelog_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """The state tables' changelog topics: name -> (partitions, config). The worker creates
    them before Faust starts: a changelog Faust creates itself while joining the group can be
    missing from the first assignment's metadata, and a worker stalled on that (seen with the
    one-partition ``pipeline-chart`` table at 12 input partitions)."""
    compact = {"cleanup.policy": "compact"}
    prefix = app_id(settings.pipeline)
    # The pipeline chart holds the rows it waits to fold (up to MAX_BUFFERED_BYTES): more
    # than a broker's default 1 MB record limit.
    chart = {**compact, "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}
    return {
        f"{prefix}-{STATE_TABLE}-changelog": (settings.partitions, compact),
        f"{prefix}-{POOL_TABLE}-changelog": (1, chart),
    }


async def _while_registry_down(
    reader: BatchReader, batch: Batch, work: Callable[[Sequence[RawMessage]], Awaitable[Any]]
) -> bool:
    """Run ``work`` on ``batch``; while the Schema Registry is unavailable, log the error and
    try the same batch again with backoff (the step changed nothing), never dead-lettering
    good messages. False when the batch went stale (rebalance) before it could be done."""
    delay = 1.0
    while True:
        try:
            await work(batch.messages)
            return True
        except RegistryUnavailable as exc:
            log.error("%s: trying the batch again in %.0f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(2 * delay, REGISTRY_RETRY_MAX_S)
        if reader.stale(batch):
            return False


def _batch_task(
    app: Any, reader: BatchReader, topic: str, handle: Callable[[Batch], Awaitable[Any]]
) -> None:
    """Run ``handle`` on every batch of ``topic`` as a task of ``app``; an error crashes the
    worker (like an agent's), it is not swallowed with the task."""

    async def run() -> None:
        try:
            async for batch in reader.batches(topic):
                await handle(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("processing %s failed", topic)
            await app.crash(exc)

    run.__name__ = f"batches_{topic}"
    app.task(run)


def create_app(
    settings: Settings,
    store: LifecycleStore | None = None,
    metrics: MonitorMetrics | None = None,
) -> Any:
    """The Faust app monitoring pipeline ``settings.pipeline`` (see the module docstring)."""
    import faust

    from driftline.lifecycle_store import LifecycleStore

    topics = settings.topics
    signer = settings.model_version_signer()
    if signer is None:  # before anything is opened: an unsigned alarm would only be refused
        raise ConfigError(
            "drift events must be signed: set DRIFTLINE_SIGNING_KEY (or signing_key in the "
            "config file) to a key `driftline keys generate` prints, and its public half in "
            "the retrainer's DRIFTLINE_VERIFY_KEYS unless the retrainer holds the same key"
        )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = LifecycleStore.open(
            settings.store_url.get_secret_value(), artifacts=settings.artifacts
        )
    step = MonitorStep(
        settings.config,
        store,
        pipeline=settings.pipeline,
        emit_ood=settings.emit_ood,
        max_message_bytes=settings.max_message_bytes,
        # Rows wait for the checkpoint (or 50k rows), which archives them as one segment on
        # the writer thread while the next batches are processed.
        archive_rows=max(50_000, settings.batch_size),
        registry=RegistryDecoder.from_settings(settings.schema_registry),
        background_archive=True,
    )

    app = faust.App(
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
        # A SIGKILLed worker's partitions move to the others (or to its restart) after this.
        broker_session_timeout=SESSION_TIMEOUT_S,
        table_standby_replicas=0,
        web_enabled=False,
    )
    group = reader_group(app_id(settings.pipeline))
    reader = BatchReader(
        app,
        lambda: make_consumer(settings, group, fetch_wait_max_ms=FETCH_MAX_WAIT_MS),
        max_records=settings.batch_size,  # one fetch of a partition is one micro-batch
    )

    def topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(name, partitions=partitions, value_serializer="raw", key_serializer="raw")

    versions = topic(topics.model_versions, settings.partitions)
    table = app.Table(STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes)
    # One partition, like the summaries topic: the same worker owns both (see above).
    pool_table = app.Table(POOL_TABLE, partitions=1, key_type=bytes, value_type=bytes)
    transport = FaustTransport(app, reader, table, pool_table)
    loop = MonitorLoop(step, transport, metrics=metrics, signer=signer)

    def input_start(partition: int) -> int | None:
        data = transport.load_state(MonitorLoop.state_key(partition))
        return saved_offsets(data).get((topics.inputs, partition)) if data else None

    def inputs_revoked(partitions: set[int]) -> None:
        loop.revoked(partitions)
        transport.revoked([MonitorLoop.state_key(p) for p in partitions])

    def summaries_revoked(partitions: set[int]) -> None:
        loop.summaries_revoked()
        transport.pool_revoked()

    # The batch topics follow the tables their state lives in (see the module docstring).
    reader.follow(topics.inputs, table, start=input_start, on_revoked=inputs_revoked)
    reader.follow(topics.labels, table)
    reader.follow(topics.detector_summaries, pool_table, on_revoked=summaries_revoked)

    async def monitor(batch: Batch) -> None:
        if await _while_registry_down(reader, batch, loop.inputs) and metrics is not None:
            metrics.observe_lag(lambda t, p: batch.highwater, batch.messages[-1:])

    async def pool(batch: Batch) -> None:
        await loop.summaries(batch.messages)

    async def labels(batch: Batch) -> None:
        await _while_registry_down(reader, batch, loop.labels)

    _batch_task(app, reader, topics.inputs, monitor)
    _batch_task(app, reader, topics.labels, labels)
    _batch_task(app, reader, topics.detector_summaries, pool)

    verifier = settings.model_version_verifier()

    @app.agent(versions, name="model_versions")
    async def version_agent(stream: Any) -> None:
        async for value in stream:
            # Verified before anything it names is touched; even then the step installs the
            # champion the store records, not what the event says.
            try:
                event = ModelVersionEvent.from_json(value)
                verifier.verify(event)
            except SchemaError as exc:
                reason = getattr(exc, "reason", "schema_violation")
                if metrics is not None:
                    metrics.observe_refused_model_version(reason)
                log.error(
                    "refusing a ModelVersionEvent on %s (%s): %s",
                    topics.model_versions,
                    reason,
                    exc,
                )
                continue
            step.on_model_version(event)

    @app.timer(CHECKPOINT_INTERVAL_S)
    async def checkpoint_when_idle() -> None:
        await loop.checkpoint_if_due()

    @app.timer(REFERENCE_POLL_S)
    async def poll_champion() -> None:
        step.sync_reference()

    return app
