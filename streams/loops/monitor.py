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

The checkpoint of `checkpoint_if_due` does not wait for the archive: it hands the pending
rows to the step's archive writer and takes the state snapshot at once, and the loop goes on
with the next batches while the segment is written (`MonitorStep` with
``background_archive``). Only when the segment is written does it save that snapshot and
commit its offsets (first sending the ``poison`` dead letters of rows the archive refused);
if the store refused the segment, the snapshot is dropped and its rows are written with the
next one. At most one such checkpoint is under way; `checkpoint` waits for everything.

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

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from driftline.schemas import DeadLetter, DeadLetterReason, EventSigner, EventVerifier, SchemaError
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.codec import dead_letter
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


def output_records(
    step: MonitorStep, out: MonitorOutput, signer: EventSigner | None = None
) -> list[Record]:
    """Where each output of a `MonitorStep.process` call goes: the one routing table.

    Dead letters → ``{p}.dlq``; DriftEvents → ``{p}.drift`` keyed by the pipeline (one
    partition keeps a pipeline's alarms in order), signed by ``signer`` (the retrainer refuses
    unsigned alarms); OODFlags → ``{p}.ood`` keyed by event; detector summaries →
    ``{p}.detector-summaries`` (one partition, one owner), sealed by ``signer``: the owner
    folds only summaries of the pipeline's workers, who share its signing key.
    """
    topics, key = step.topics, step.pipeline.encode()
    seal = (lambda s: s) if signer is None else signer.seal
    records = [
        Record(topics.detector_summaries, seal(s), key=key, headers=SUMMARY_HEADERS)
        for s in out.summaries
    ]
    records += dead_letter_records(topics.dlq, out.dead_letters)
    drift = out.drift_events if signer is None else [signer.sign(e) for e in out.drift_events]
    records += [Record(topics.drift, e.to_json(), key=key) for e in drift]
    records += [Record(topics.ood, f.to_json(), key=f.event_id.encode()) for f in out.ood_flags]
    return records


@dataclass
class _Checkpoint:
    """A checkpoint taken but not saved yet: it waits for the archive to be written."""

    archived: Future[Any]
    states: dict[int, tuple[str, bytes]]  # partition -> (topic, state)
    offsets: dict[tuple[str, int], int]
    labels: dict[tuple[str, int], int]
    started: float
    pool: tuple[bytes | None, dict[tuple[str, int], int]] | None = None


class MonitorLoop:
    """Drive one `MonitorStep` over ``transport`` (see the module docstring)."""

    def __init__(
        self,
        step: MonitorStep,
        transport: Transport,
        *,
        metrics: MonitorMetrics | None = None,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        signer: EventSigner | None = None,
    ) -> None:
        self.step = step
        self.signer = signer
        #: summaries are sealed by the workers' shared key; with no signer, none are sealed
        self._sealed_by = None if signer is None else EventVerifier([signer.public_key])
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
        #: counts revocations of the summaries topic (a batch merged before one is not ours)
        self._owner = 0
        self._last = time.monotonic()
        self._under_way: _Checkpoint | None = None

    @staticmethod
    def state_key(partition: int) -> bytes:
        return f"partition-{partition}".encode()

    async def inputs(self, messages: Sequence[RawMessage]) -> MonitorOutput:
        """One batch of one input partition: process, route the outputs, checkpoint if due."""
        last = messages[-1]
        self._restore(last.partition)
        started = time.perf_counter()
        out = self.step.process(messages)
        await self.transport.send(output_records(self.step, out, self.signer))
        for event in out.drift_events:
            log.warning(
                "drift %s: statistic %.4g > %.4g", event.drift_id, event.statistic, event.threshold
            )
        if last.partition in self._restored:  # not revoked while the outputs were sent
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
        owner = self._owner
        # The offset to commit is the batch's last, whether or not its last record was sealed
        # (a batch of forged records only must not stop the chart's agent).
        last = messages[-1]
        kept, refused = self._unseal(messages)
        out = self.step.merge_summaries(kept)
        out.dead_letters[:0] = refused
        await self.transport.send(output_records(self.step, out, self.signer))
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
        if owner == self._owner:  # not revoked while the outputs were sent
            self._summaries[(last.topic, last.partition)] = last.offset + 1
        if self.metrics is not None:
            self.metrics.observe_summaries(out)
        await self.checkpoint_if_due()
        return out

    def _unseal(self, messages: Sequence[RawMessage]) -> tuple[list[RawMessage], list[DeadLetter]]:
        """The summaries sealed by this pipeline's workers, and a dead letter for each other
        record on the topic (a forged summary would steer the pipeline's chart)."""
        if self._sealed_by is None:
            return list(messages), []
        kept, refused = [], []
        for m in messages:
            try:
                kept.append(m._replace(value=self._sealed_by.unseal(m.value)))
            except SchemaError as exc:
                reason = getattr(exc, "reason", "unsigned")
                detail = f"detector summary not sealed by this pipeline's workers ({reason}): {exc}"
                refused.append(
                    dead_letter(m, self.step.pipeline, DeadLetterReason.UNSIGNED, detail)
                )
        return kept, refused

    def summaries_revoked(self) -> None:
        """The summaries topic moved to another worker: it restores the chart from there."""
        self.step.drop_pool()
        self._pool_restored = False
        self._summaries = {}
        self._owner += 1
        if self._under_way is not None:  # the new owner restores the chart saved before
            self._under_way.pool = None

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
        cp = self._under_way
        if cp is not None:  # the new owner redelivers from the last commit
            cp.states = {p: v for p, v in cp.states.items() if p not in gone}
            cp.offsets = {k: v for k, v in cp.offsets.items() if k[1] not in gone}
            cp.labels = {k: v for k, v in cp.labels.items() if k[1] not in gone}
        self._restored -= gone
        for p in gone:
            self._pending.pop(p, None)
        self._labels = {k: v for k, v in self._labels.items() if k[1] not in gone}

    def due(self) -> bool:
        waiting = self._pending or self._labels or self._summaries
        return bool(waiting) and time.monotonic() - self._last >= self.interval_s

    async def checkpoint_if_due(self) -> None:
        """Finish a checkpoint whose archive is written; take a new one if due (without
        waiting for its archive, see the module docstring)."""
        await self._finish(wait=False)
        if self.due():
            await self._finish(wait=True)  # at most one under way
            self._begin()
            await self._finish(wait=False)

    async def checkpoint(self) -> None:
        """Save the state of the touched partitions, then commit the offsets it covers."""
        await self._finish(wait=True)
        self._begin()
        await self._finish(wait=True)

    def _begin(self) -> None:
        """Hand the pending rows to the archive and snapshot the touched partitions."""
        pending, self._pending = self._pending, {}
        self._last = time.monotonic()
        started = time.perf_counter()
        archived = self.step.submit_archive()
        states, offsets = {}, {}
        for partition, topic in sorted(pending.items()):
            states[partition] = (topic, self.step.state_bytes([partition], flush=False))
            covered = self.step.covered_offset(topic, partition)
            if covered is not None:
                offsets[(topic, partition)] = covered
        labels: dict[tuple[str, int], int] = {}
        pool: tuple[bytes | None, dict[tuple[str, int], int]] | None = None
        if self._summaries:  # the pipeline chart and the summary offsets it covers
            pool, self._summaries = (self.step.pool_state_bytes(), self._summaries), {}
        if not self.step.holds_labels:  # labels that came before their rows wait with them
            labels, self._labels = self._labels, {}
        self._under_way = _Checkpoint(archived, states, offsets, labels, started, pool)

    async def _finish(self, *, wait: bool) -> None:
        """Save and commit the checkpoint under way once its archive is written."""
        cp = self._under_way
        if cp is None or (not wait and not cp.archived.done()):
            return
        if not cp.archived.done():
            await asyncio.wait([asyncio.wrap_future(cp.archived)])
        self._under_way = None
        try:
            self.step.collect_archive()  # raises if the store refused: the snapshot is dropped
        except Exception:
            self._labels = {**cp.labels, **self._labels}
            if cp.pool is not None:
                self._summaries = {**cp.pool[1], **self._summaries}
            for partition, (topic, _) in cp.states.items():
                self._pending.setdefault(partition, topic)
            raise
        # Poison rows are covered by the snapshot: their dead letters go out before it.
        letters = self.step.release_dead_letters()
        await self.transport.send(dead_letter_records(self.step.topics.dlq, letters))
        offsets = dict(cp.labels)
        for partition, (topic, state) in sorted(cp.states.items()):
            self.transport.save_state(partition, self.state_key(partition), state)
            covered = cp.offsets.get((topic, partition))
            held = self.step.next_offset(topic, partition)
            if covered is not None:
                offsets[(topic, partition)] = covered if held is None else min(covered, held)
        if cp.pool is not None:
            chart, summaries = cp.pool
            if chart is not None:
                self.transport.save_pool_state(chart)
            offsets.update(summaries)
        await self.transport.commit(offsets)
        if self.metrics is not None and cp.states:
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - cp.started)

    def _restore(self, partition: int) -> None:
        """Load the saved state of ``partition`` unless this worker restored it already."""
        if partition in self._restored:
            return
        data = self.transport.load_state(self.state_key(partition))
        if data:
            self.step.restore(data, partitions=[partition])
            log.info("restored monitor state of partition %d (%d bytes)", partition, len(data))
        self._restored.add(partition)
