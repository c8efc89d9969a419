"""The Faust app of a pipeline: a thin shell feeding `MonitorLoop` from Kafka.

``{p}.inputs``  → ``monitor`` agent: one batch per fetch → `MonitorLoop.inputs`
``{p}.labels``  → ``labels`` agent: `MonitorLoop.labels`
``{p}.model-versions`` → ``model_versions`` agent: `MonitorStep.on_model_version`
``{p}.detector-summaries`` → ``pool`` agent: `MonitorLoop.summaries` (pooled detection)

With pooled detection (the default) the monitor agent publishes each partition's detector
summaries instead of running a chart; the summaries topic has one partition, so the Faust
assignor gives it — and the one-partition ``pipeline-chart`` table, whose changelog is in the
same co-partitioned group — to exactly one worker, which merges them into the pipeline's one
chart and publishes its DriftEvents. A rebalance moves the topic and the table together.

What happens to a batch — the step, where its outputs go, when state is saved and which
offsets are committed — lives in `driftline.streams.loops.monitor`; this module is the Kafka
side of `driftline.streams.transport`: `FaustTransport` produces through Faust's producer,
keeps step state in the ``monitor-state`` table (its changelog partition sits next to the
input partition, so whoever owns the input after a rebalance recovers its state) and commits
after a producer flush.

Inputs and labels skip Faust's per-message path: each fetch of a partition reaches its agent
as one `Batch` (see `driftline.streams.kafka.faust_batches`, which also argues why that hook
and not `stream.take`). Faust still runs the worker: group membership, co-partitioned
assignment, table recovery, and flow control during rebalances.

Faust never acks inputs or labels (their topics are declared with ``acks=False``): Faust acks —
and so commits — messages it *skips* while a rebalance or a table recovery is under way; with
acks on, a restart could move the committed offset past rows that were never processed (the
integration test that SIGKILLs a worker caught exactly that). With the loop's own commits, the
offset Faust seeks to after every rebalance is always one the state covers.

Every worker also re-reads the champion from the lifecycle store every
``REFERENCE_POLL_S`` seconds, because with several workers in one consumer group only the
worker that owns the ``{p}/champion`` key's partition receives the ModelVersionEvent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from driftline.config.settings import Settings
from driftline.schemas import ModelVersionEvent, SchemaError
from driftline.streams.exceptions import ConfigError
from driftline.streams.kafka.clients import DLQ_MAX_MESSAGE_BYTES, faust_credentials
from driftline.streams.kafka.faust_batches import BatchApp, deliver_batches
from driftline.streams.loops.monitor import CHECKPOINT_INTERVAL_S, POOL_STATE_KEY, MonitorLoop
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import RegistryDecoder, RegistryUnavailable
from driftline.streams.monitor.step import MonitorStep
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
    """`driftline.streams.transport.Transport` on a Faust app and its state table."""

    def __init__(self, app: BatchApp, table: Any, pool_table: Any = None) -> None:
        self.app = app
        self.table = table
        self.pool_table = pool_table
        self._topics: dict[str, Any] = {}

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
        from faust.types import TP

        await self.app.producer.flush()  # the changelog and every output, before the offsets
        if offsets:
            # Faust's public commit covers only acked events, and acks are off for the input
            # and the labels (see the module docstring), so commit through the consumer's own
            # call — a private one, see `driftline.streams.kafka.faust_batches`.
            consumer = cast(Any, self.app.consumer)
            await consumer._commit({TP(t, p): o for (t, p), o in offsets.items()})

    def save_state(self, partition: int, key: bytes, value: bytes) -> None:
        # The changelog partition of the input partition: state stays co-partitioned with its
        # input. ``table[key] = value`` would pick the partition of the current Faust event,
        # and a batch agent has none.
        self.table.send_changelog(partition, key, value)
        self.table.data[key] = value

    def load_state(self, key: bytes) -> bytes | None:
        data: bytes | None = self.table.get(key)
        return data

    def save_pool_state(self, value: bytes) -> None:
        if self.pool_table is None:
            raise RuntimeError("this transport has no table for the pipeline chart")
        self.pool_table.send_changelog(0, POOL_STATE_KEY, value)
        self.pool_table.data[POOL_STATE_KEY] = value

    def load_pool_state(self) -> bytes | None:
        if self.pool_table is None:
            return None
        data: bytes | None = self.pool_table.get(POOL_STATE_KEY)
        return data


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
    app: Any, batch: Any, work: Callable[[Sequence[RawMessage]], Awaitable[Any]]
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
        if batch.stale(app):
            return False


def create_app(
    settings: Settings,
    store: LifecycleStore | None = None,
    metrics: MonitorMetrics | None = None,
) -> BatchApp:
    """The Faust app monitoring pipeline ``settings.pipeline`` (see the module docstring)."""
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
        return app.topic(
            name, partitions=partitions, value_serializer="raw", key_serializer="raw", acks=acks
        )

    # No Faust acks on the inputs and labels: the loop commits their offsets, once what they
    # carry is archived (see the module docstring).
    inputs = topic(topics.inputs, settings.partitions, acks=False)
    labels = topic(topics.labels, settings.partitions, acks=False)
    versions = topic(topics.model_versions, settings.partitions)
    table = app.Table(STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes)
    # One partition, like the summaries topic: the same worker owns both (see above).
    summaries = topic(topics.detector_summaries, 1, acks=False)
    pool_table = app.Table(POOL_TABLE, partitions=1, key_type=bytes, value_type=bytes)
    loop = MonitorLoop(step, FaustTransport(app, table, pool_table), metrics=metrics, signer=signer)

    @app.agent(deliver_batches(app, inputs), name="monitor")
    async def monitor(stream: Any) -> None:
        async for batch in stream:
            if batch.stale(app):  # fetched before a rebalance: Faust seeks back to the commit
                continue
            if not await _while_registry_down(app, batch, loop.inputs):
                continue
            if metrics is not None:
                metrics.observe_lag(app, batch.messages[-1:])  # one partition per batch

    @app.agent(deliver_batches(app, summaries), name="pool")
    async def pool_agent(stream: Any) -> None:
        async for batch in stream:
            if not batch.stale(app):
                await loop.summaries(batch.messages)

    @app.agent(deliver_batches(app, labels), name="labels")
    async def label_agent(stream: Any) -> None:
        async for batch in stream:
            if not batch.stale(app):
                await _while_registry_down(app, batch, loop.labels)

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

    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked", ())
        mine = {tp.partition for tp in revoked if tp.topic == topics.inputs}
        if mine:
            loop.revoked(mine)
        if any(tp.topic == topics.detector_summaries for tp in revoked):
            loop.summaries_revoked()

    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    return app
