"""The monitor loop: batch → `MonitorStep` → route outputs → checkpoint → commit.

Written once for every transport. The Faust worker (`driftline.streams.kafka.app`) and the
embedded runner (`driftline.streams.embedded.runner`) are shells that feed it batches of one
partition and tell it about revoked partitions.

Crash safety. Every ``interval_s`` the loop checkpoints: the step archives the rows it holds
(one Parquet segment), the state of every partition that had rows since the last checkpoint
goes to `Transport.save_state`, and `Transport.commit` makes those state records and every
output durable before it commits the input offsets the state covers — plus the label
offsets whose labels are archived. A worker killed with SIGKILL restarts from that commit:
the state is recovered, rows it already covers are skipped (the state remembers the offsets
it folded in), so nothing is lost and nothing is counted twice.

>>> import asyncio, tempfile
>>> from driftline.config.pipeline import PipelineConfig
>>> from driftline.lifecycle_store import LifecycleStore
>>> from driftline.streams.embedded.bus import InMemoryBus
>>> from driftline.streams.embedded.runner import BusTransport
>>> from driftline.streams.monitor.step import MonitorStep
>>> d = tempfile.mkdtemp()
>>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
>>> bus = InMemoryBus()
>>> loop = MonitorLoop(MonitorStep(PipelineConfig(name="doc"), store, pipeline="doc"),
...                    BusTransport(bus), interval_s=0)
>>> msg = bus.produce("doc.inputs", b"not json")
>>> out = asyncio.run(loop.inputs([msg]))
>>> len(out.dead_letters), bus.end_offsets("doc.dlq")
(1, [1])
>>> bus.committed("driftline-monitor", "doc.inputs")
[1]
>>> store.close()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from driftline.schemas import DeadLetter
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import LabelOutput, MonitorOutput, MonitorStep
from driftline.streams.transport import Record, Transport

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "POOL_STATE_KEY",
    "SUMMARY_HEADERS",
    "MonitorLoop",
    "dead_letter_records",
    "output_records",
]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
POOL_STATE_KEY = b"pipeline-chart"
SUMMARY_HEADERS: tuple[tuple[str, bytes], ...] = (
    ("content-type", b"application/x-driftline-summary"),
)


def dead_letter_records(topic: str, letters: Iterable[DeadLetter]) -> list[Record]:
    """Dead letters as records of ``topic`` (unkeyed: any partition of the DLQ will do)."""
    return [Record(topic, letter.to_json()) for letter in letters]


def output_records(step: MonitorStep, out: MonitorOutput) -> list[Record]:
    """Where each output of a `MonitorStep.process` call goes: the one routing table.

    Dead letters → ``{p}.dlq``; DriftEvents → ``{p}.drift`` keyed by the pipeline (one
    partition keeps a pipeline's alarms in order); OODFlags → ``{p}.ood`` keyed by event;
    detector summaries → ``{p}.detector-summaries`` (one partition, one owner).
    """
    topics, key = step.topics, step.pipeline.encode()
    records = [
        Record(topics.detector_summaries, s, key=key, headers=SUMMARY_HEADERS)
        for s in out.summaries
    ]
    records += dead_letter_records(topics.dlq, out.dead_letters)
    records += [Record(topics.drift, e.to_json(), key=key) for e in out.drift_events]
    records += [Record(topics.ood, f.to_json(), key=f.event_id.encode()) for f in out.ood_flags]
    return records


class MonitorLoop:
    """Drive one `MonitorStep` over ``transport`` (see the module docstring)."""

    def __init__(
        self,
        step: MonitorStep,
        transport: Transport,
        *,
        metrics: MonitorMetrics | None = None,
        interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        self.step = step
        self.transport = transport
        self.metrics = metrics
        self.interval_s = interval_s
        #: input partition -> its topic, for partitions with rows since the last checkpoint
        self._pending: dict[int, str] = {}
        #: (labels topic, partition) -> the next offset to commit once labels are archived
        self._labels: dict[tuple[str, int], int] = {}
        self._restored: set[int] = set()
        #: (summaries topic, 0) -> the next offset to commit once the chart is saved
        self._summaries: dict[tuple[str, int], int] = {}
        self._pool_restored = False
        self._last = time.monotonic()

    @staticmethod
    def state_key(partition: int) -> bytes:
        return f"partition-{partition}".encode()

    async def inputs(self, messages: Sequence[RawMessage]) -> MonitorOutput:
        """One batch of one input partition: process, route the outputs, checkpoint if due."""
        last = messages[-1]
        self._restore(last.partition)
        started = time.perf_counter()
        out = self.step.process(messages)
        await self.transport.send(output_records(self.step, out))
        for event in out.drift_events:
            log.warning(
                "drift %s: statistic %.4g > %.4g", event.drift_id, event.statistic, event.threshold
            )
        self._pending[last.partition] = last.topic
        if self.metrics is not None:
            self.metrics.observe_batch(out, messages, time.perf_counter() - started)
        await self.checkpoint_if_due()
        return out

    async def summaries(self, messages: Sequence[RawMessage]) -> MonitorOutput:
        """One batch of ``{p}.detector-summaries`` (this worker owns the pipeline chart):
        merge, route the DriftEvents and refused summaries, checkpoint if due."""
        if not self._pool_restored:
            data = self.transport.load_pool_state()
            if data:
                self.step.restore_pool(data)
                log.info("restored the pipeline chart (%d bytes)", len(data))
            self._pool_restored = True
        out = self.step.merge_summaries(messages)
        await self.transport.send(output_records(self.step, out))
        for event in out.drift_events:
            log.warning(
                "drift %s (pipeline chart): statistic %.4g > %.4g",
                event.drift_id,
                event.statistic,
                event.threshold,
            )
        for letter in out.dead_letters:
            log.error("refused a detector summary: %s", letter.detail)
        if out.skipped_summaries:
            log.info("skipped %d summaries of another reference", out.skipped_summaries)
        last = messages[-1]
        self._summaries[(last.topic, last.partition)] = last.offset + 1
        if self.metrics is not None:
            self.metrics.observe_summaries(out)
        await self.checkpoint_if_due()
        return out

    def summaries_revoked(self) -> None:
        """The summaries topic moved to another worker: it restores the chart from there."""
        self.step.drop_pool()
        self._pool_restored = False
        self._summaries = {}

    async def labels(self, messages: Sequence[RawMessage]) -> LabelOutput:
        """One batch of one labels partition; its offset is committed once archived."""
        out = self.step.process_labels(messages)
        await self.transport.send(dead_letter_records(self.step.topics.dlq, out.dead_letters))
        last = messages[-1]
        self._labels[(last.topic, last.partition)] = last.offset + 1
        if self.metrics is not None:
            self.metrics.observe_labels(out)
        await self.checkpoint_if_due()
        return out

    def revoked(self, partitions: Iterable[int]) -> None:
        """Partitions moved to another worker: their state will come back from the transport.

        Rows since the last checkpoint go to the new owner too (their offsets were not
        committed), so the in-memory state of those partitions is dropped, not saved.
        """
        gone = set(partitions)
        self.step.drop_partitions(gone)
        self._restored -= gone
        for p in gone:
            self._pending.pop(p, None)
        self._labels = {k: v for k, v in self._labels.items() if k[1] not in gone}

    def due(self) -> bool:
        waiting = self._pending or self._labels or self._summaries
        return bool(waiting) and time.monotonic() - self._last >= self.interval_s

    async def checkpoint_if_due(self) -> None:
        if self.due():
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Save the state of the touched partitions, then commit the offsets it covers."""
        pending, self._pending = self._pending, {}
        self._last = time.monotonic()
        started = time.perf_counter()
        offsets = {}
        for partition, topic in sorted(pending.items()):
            state = self.step.state_bytes([partition])  # archives the rows it holds first
            self.transport.save_state(partition, self.state_key(partition), state)
            nxt = self.step.next_offset(topic, partition)
            if nxt is not None:
                offsets[(topic, partition)] = nxt
        if self._summaries:
            pool = self.step.pool_state_bytes()
            if pool is not None:
                self.transport.save_pool_state(pool)
            offsets.update(self._summaries)
            self._summaries = {}
        if not self.step.holds_labels:  # labels that came before their rows wait with them
            offsets.update(self._labels)
            self._labels = {}
        await self.transport.commit(offsets)
        if self.metrics is not None and pending:
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def _restore(self, partition: int) -> None:
        """Load the saved state of ``partition`` unless this worker restored it already."""
        if partition in self._restored:
            return
        data = self.transport.load_state(self.state_key(partition))
        if data:
            self.step.restore(data, partitions=[partition])
            log.info("restored monitor state of partition %d (%d bytes)", partition, len(data))
        self._restored.add(partition)
