"""MonitorStep: the one pure processing step behind every transport.

``process(messages)`` takes a micro-batch of raw ``{p}.inputs`` messages and does, in order:
decode and validate (bad ones become dead letters), archive the valid rows (Parquet segments
in the lifecycle store), update the sketch and the drift detectors, and return what to
publish (dead letters, drift events, OOD flags). The Faust agent and the embedded runner
both call it; neither does any of this work itself.

**One pipeline chart (``detection = "pooled"``, the default).** A change that hits every
partition must be caught in rows of the *pipeline*, whatever the number of partitions ``P``,
and give one DriftEvent. A partition's state must live where the partition is processed (a
rebalance moves both together), so each partition's step does only the costly, stateless half
of a detector update — validation and the feature map (``partial_state``) — and sends the
result as a detector summary to ``{p}.detector-summaries``. That topic has one partition, so
exactly one worker of the group owns it (the assignor decides which, and moves it with its
checkpoint on a rebalance); its step folds the summaries in arrival order into one
`driftline.detectors.PooledDetector` (`merge_summaries`) and emits the DriftEvents. The chart
runs over the pipeline's rows: its false-alarm rate is the requested ``ert`` and its delay in
total rows does not grow with ``P`` (BENCHMARKS.md, "Pooling across partitions"). The owner's
chart is checkpointed like a partition's state (`pool_state_bytes`, saved beside the summaries
partition).

**One chart per partition (``detection = "per_partition"``), each with the user's ``ert``.**
Alarms of independent monitors add up, but ``ert`` counts *events*, not seconds: over ``N``
pipeline events, partition ``i`` sees ``N_i`` of them and raises ``N_i / ert_i`` false
alarms, so the pipeline raises ``sum(N_i / ert_i)``, which is ``N / ert`` exactly when every
partition's detector keeps ``ert_i = ert`` — however unevenly the traffic is split and however
the partitions are spread over workers. A test checks that ``P`` partition monitors raise as
many false alarms on the same no-drift rows as one monitor does. The price is detection delay
and duplicates: each monitor sees ``1/P`` of the rows, so a drift that hits every partition is
caught after about ``P`` times as many total rows, and raises ``P`` DriftEvents.

**Reference.** With a champion deployed, the reference is the data version it was trained on
(read from the store). Before any champion exists, the first ``reference_rows`` valid rows
form a bootstrap reference, snapshotted as a root data version so every DriftEvent names its
reference. A champion trained on fewer than ``reference_rows`` rows (a drift training uses
only rows from the change point on) is installed at once, with the detector's conservative
small-reference threshold, and then grown from the archive into a full reference — its rows
plus the next archived rows of its concept, a data version appended to the champion's — as
soon as the archive holds them (`driftline.streams.monitor.reference`); DriftEvents keep
naming the champion's data version. After a DriftEvent the detector is reset and monitoring
continues against the same reference (one drift *episode* per reference; the retrainer
debounces by episode).

**Exactly-once effect on state under at-least-once delivery.** The step remembers the next
offset of every input partition it has folded into its state; messages re-delivered after a
crash (offsets below it) are skipped whole — their rows were archived before the checkpoint
that recorded the offsets — so a restored state plus a replay equals an uninterrupted run.
Rows re-delivered *beyond* the last checkpoint are archived again; the archive keeps one row
per event id when read.

**One message, one fate.** Each message is decoded and validated on its own (see the codec),
so a bad one becomes a dead letter without touching the others of its fetch. `next_offset`,
which a transport commits, passes a message only once its rows are archived or its dead letter
is in an output: rows waiting for the next archive segment, or a ``poison`` dead letter of
rows the archive refused, hold their partition's offset back until then.

>>> import tempfile, numpy as np
>>> from datetime import datetime, timezone
>>> from driftline.lifecycle_store import LifecycleStore
>>> from driftline.config.pipeline import PipelineConfig
>>> from driftline.schemas import InferenceEvent
>>> d = tempfile.mkdtemp()
>>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
>>> config = PipelineConfig(name="demo", detector={"reference_rows": 100, "ert": 1000,
...                                                "params": {"n_simulated": 20000}})
>>> step = MonitorStep(config, store, pipeline="demo")
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> x = np.random.default_rng(0).normal(size=(300, 2))
>>> msgs = [RawMessage(InferenceEvent(event_id=f"e{i}", timestamp=t0, pipeline="demo",
...             features={"a": x[i, 0], "b": x[i, 1]}).to_json(), topic="demo.inputs", offset=i)
...         for i in range(300)]
>>> out = step.process(msgs)
>>> out.rows, out.dead_letters, out.drift_events, step.reference_data_version is not None
(300, [], [], True)
>>> store.archive("demo").row_count()
300
>>> store.close()
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import add, itemgetter, lt
from typing import Any

import numpy as np

from driftline.config.pipeline import PipelineConfig
from driftline.detectors import (
    Coreset,
    DriftDetector,
    InvalidInputError,
    OODScorer,
    PartialState,
    make_detector,
)
from driftline.lifecycle_store import LifecycleStore
from driftline.lifecycle_store.archive import Archive
from driftline.lifecycle_store.exceptions import (
    ArtifactCorruptedError,
    NotFoundError,
    StoreError,
)
from driftline.lifecycle_store.orm import as_utc
from driftline.schemas import (
    DeadLetter,
    DeadLetterReason,
    DriftEvent,
    ModelVersionEvent,
    OODFlag,
    Topics,
)
from driftline.streams.monitor.alarms import AlarmWindow, drift_event, from_us
from driftline.streams.monitor.archiving import MessageKey, Segment, SegmentWriter
from driftline.streams.monitor.bootstrap import (
    BootstrapWatch,
    canonical_order,
    marker,
    pipeline_bootstrap,
)
from driftline.streams.monitor.codec import dead_letter, decode_inputs, decode_labels
from driftline.streams.monitor.early_labels import EarlyLabels
from driftline.streams.monitor.label_pin import LabelKindPin
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.pool import PipelinePool
from driftline.streams.monitor.reference import Extension, extended_table
from driftline.streams.monitor.registry import RegistryDecoder
from driftline.streams.monitor.rows import Rows, strings
from driftline.streams.monitor.summaries import (
    MAX_ROWS,
    MAX_SUMMARY_BYTES,
    Summary,
    SummaryError,
    decode_summary,
    encode_summary,
)

__all__ = ["LabelOutput", "MonitorOutput", "MonitorStep", "saved_offsets"]

log = logging.getLogger(__name__)

# Rows per partition and batch fed to the sketch: a strided sample keeps its cost (O(k·d) per
# row) a small, bounded share of a batch whatever the traffic, and stays uniform over time.
# Samples are reduced into the core set in blocks, which amortizes the per-call overhead.
SKETCH_ROWS_PER_BATCH = 32
SKETCH_K = 64
_SKETCH_BLOCK = 4 * SKETCH_K
DETECT_CHUNK = 4096
_STATE_MAGIC = b"DLMON\x00\x01\x00"
ARCHIVE_ATTEMPTS = 3
"""Tries to archive one message's rows before they become a ``poison`` dead letter."""
DEAD_LETTER_MAX_BYTES = 64 * 1024 * 1024
"""Largest dead letter sent whole; keep it at or below the broker's limit for ``{p}.dlq``
(``streams.kafka.clients.DLQ_MAX_MESSAGE_BYTES``). Larger originals go to the artifact store."""
# JSON overhead of a dead letter beyond its base64 payload (detail, headers, ids).
_DEAD_LETTER_OVERHEAD = 64 * 1024
# RawMessage fields read in C over a batch: (topic, partition), offset, (topic, partition, offset).
_SOURCE, _OFFSET, _KEY = itemgetter(3, 4), itemgetter(5), itemgetter(3, 4, 5)


@dataclass
class MonitorOutput:
    """What one `MonitorStep.process` call produced.

    ``statistic``/``threshold`` are the detector's latest values (of the partition closest
    to its threshold when several were updated), None before a reference exists;
    ``rows_seen`` counts every valid row the step has processed since it started, so a report
    can plot the statistic against it. With pooled detection `MonitorStep.process` returns
    ``summaries`` (for ``{p}.detector-summaries``) instead of running a chart, and
    `MonitorStep.merge_summaries` returns the DriftEvents (``rows`` then counts the rows it
    folded, ``rows_seen`` those of the pipeline chart).
    """

    rows: int
    dead_letters: list[DeadLetter] = field(default_factory=list)
    drift_events: list[DriftEvent] = field(default_factory=list)
    ood_flags: list[OODFlag] = field(default_factory=list)
    statistic: float | None = None
    threshold: float | None = None
    rows_seen: int = 0
    suppressed_alarms: int = 0
    empty_messages: int = 0
    summaries: list[bytes] = field(default_factory=list)
    skipped_summaries: int = 0


@dataclass
class LabelOutput:
    """What one `MonitorStep.process_labels` call produced."""

    labels: int
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass
class _Partition:
    """Monitoring state of one input partition: its detector (per-partition detection), the
    sketch of its rows and the `AlarmWindow` of its chart."""

    detector: DriftDetector
    sketch: Coreset
    window: AlarmWindow = field(default_factory=AlarmWindow)
    pending: list[np.ndarray] = field(default_factory=list)

    def extend_window(self, rows: Rows, start: int, stop: int) -> None:
        """Rows ``start:stop`` of ``rows`` were monitored."""
        if stop > start:
            self.window.extend(
                rows.features[start:stop],
                rows.partitions[start:stop],
                rows.offsets[start:stop],
                rows.timestamps_us[start:stop],
            )

    def sample(self, x: np.ndarray) -> None:
        stride = max(1, len(x) // SKETCH_ROWS_PER_BATCH)
        self.pending.append(x[::stride])
        if sum(len(p) for p in self.pending) >= _SKETCH_BLOCK:
            self.flush_sketch()

    def flush_sketch(self) -> None:
        if self.pending:
            self.sketch.update(np.concatenate(self.pending))
            self.pending = []


class MonitorStep:
    """Decode → validate → archive → sketch and detect → outputs, for one pipeline.

    ``config.detection`` chooses the layout (see the module docstring): ``"pooled"`` (the
    default) turns each partition's rows into detector summaries (``MonitorOutput.summaries``,
    for ``{p}.detector-summaries``) and `merge_summaries` folds every partition's summaries
    into the one pipeline chart — on the worker that owns that topic; ``"per_partition"``
    gives each partition that carries rows its own detector with the pipeline's ``ert``.
    ``emit_ood`` adds per-event OOD flags on ``{p}.ood``.

    ``archive_rows`` > 0 collects valid rows and archives them as one segment once that many
    are pending (or at `flush`/`state_bytes`), which a high-rate transport uses to write a
    few large segments instead of one per micro-batch; 0 archives every batch at once.
    ``background_archive`` writes those segments on a writer thread, overlapped with the
    next batches (see `driftline.streams.monitor.archiving`); their messages stay held in
    `next_offset` until the write is collected, and a transport that checkpoints without
    waiting uses `submit_archive` / `collect_archive` (as `MonitorLoop` does).

    While a drift persists the detector, reset after each alarm, would alarm again within a
    window; an alarm of the same episode is therefore *emitted* again only after
    ``alarm_holdoff`` more rows of its partition (default ``ert``: the rate a false alarm
    comes at anyway). Alarms held back reset the detector all the same and are counted in
    ``MonitorOutput.suppressed_alarms``.

    ``registry`` decodes inputs and labels in the Confluent wire format (see
    `driftline.streams.monitor.registry`); when it raises `RegistryUnavailable`, `process`
    and `process_labels` have changed nothing and may be called again with the same batch.
    """

    extend_references: bool = True
    """Grow a champion's data version of fewer than ``reference_rows`` rows into a full
    reference from the archive (see `driftline.streams.monitor.reference`); False keeps the
    short reference for the whole deployment (the behaviour before; for comparisons)."""

    def __init__(
        self,
        config: PipelineConfig,
        store: LifecycleStore,
        *,
        pipeline: str,
        emit_ood: bool = False,
        max_message_bytes: int = 8 * 1024 * 1024,
        archive_rows: int = 0,
        alarm_holdoff: int | None = None,
        max_dead_letter_bytes: int = DEAD_LETTER_MAX_BYTES,
        registry: RegistryDecoder | None = None,
        background_archive: bool = False,
    ) -> None:
        if archive_rows < 0:
            raise ValueError(
                f"archive_rows must be >= 0 (0 archives every batch), got {archive_rows}"
            )
        self.config = config
        self.store = store
        self.pipeline = pipeline
        self.topics = Topics(pipeline)
        self.pooled = config.detection == "pooled"
        self.emit_ood = emit_ood
        self.max_message_bytes = max_message_bytes
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self.registry = registry
        self.archive_rows = archive_rows
        self.alarm_holdoff = int(config.detector.ert) if alarm_holdoff is None else alarm_holdoff
        self._unarchived: list[Rows] = []
        self._early_labels = EarlyLabels(self.pipeline, self.topics.labels)
        self._label_kind = LabelKindPin(
            config, lambda: self._archive() if self._ensure_registered() else None
        )
        self.feature_names: tuple[str, ...] | None = self._known_feature_names()
        self.reference_data_version: str | None = None
        # The deployment that installed the reference: it names the drift episode.
        self.reference_deployment_id: str | None = None
        self._template: bytes | None = None
        self._ood: OODScorer | None = None
        self._monitors: dict[int, _Partition] = {}
        # Pooled detection: the detector that summarizes rows (stateless use), and the
        # pipeline chart of this worker if it owns the summaries topic.
        self._summarizer: DriftDetector | None = None
        self._pool: PipelinePool | None = None
        self._summary_rows = 0
        # Next offset per input partition folded into the state (re-deliveries below it are
        # skipped), and the offsets above which nothing may be committed yet: messages whose
        # rows wait for the archive, or whose poison dead letter is not handed out yet.
        self._folded: dict[tuple[str, int], int] = {}
        self._sources: dict[MessageKey, RawMessage] = {}
        # The held messages whose rows are in ``_unarchived`` (not submitted to the writer).
        self._pending_sources: dict[MessageKey, RawMessage] = {}
        self._writer = SegmentWriter(
            self._archive, background=background_archive, attempts=ARCHIVE_ATTEMPTS
        )
        self._held: list[DeadLetter] = []
        self._bootstrap: list[Rows] = []
        self._bootstrap_watch = BootstrapWatch()
        self._seen: dict[int, int] = {}
        self._registered = False
        self._archive_handle: Archive | None = None
        # A champion's data version too small to be the whole reference, being grown from
        # the archive (see `driftline.streams.monitor.reference`).
        self._extension: Extension | None = None
        # The champion's data version a grown reference was built from: DriftEvents name it,
        # the episode's reference (the retrainer admits alarms against the champion's data).
        self._reference_base: str | None = None
        self.sync_reference()

    # ------------------------------------------------------------------ properties
    @property
    def rows_seen(self) -> int:
        """Valid rows folded into the state (re-deliveries excluded), over all partitions."""
        return sum(self._seen.values())

    def detector(self, partition: int) -> DriftDetector | None:
        """The detector of input ``partition`` (None before a reference exists)."""
        monitor = self._monitor(partition)
        return None if monitor is None else monitor.detector

    def sketch(self, partition: int) -> Coreset | None:
        """Core set of a uniform sample of ``partition``'s rows since the last reset."""
        monitor = self._monitor(partition)
        if monitor is None:
            return None
        monitor.flush_sketch()
        return monitor.sketch

    # ------------------------------------------------------------------ processing
    def process(self, messages: Sequence[RawMessage]) -> MonitorOutput:
        """Process one micro-batch of ``{p}.inputs`` messages (in offset order per partition).

        Messages the state already covers (re-delivered after a restart, or twice in one
        batch) are skipped whole: their rows were archived before the checkpoint that
        recorded their offsets, so nothing is decoded, archived or counted twice. Every other
        message ends as archived rows, a dead letter (both, for an Arrow batch with some
        non-finite rows), or a count in ``empty_messages``; `next_offset` passes a message
        only once its rows are archived or its dead letter is in an output.
        """
        if self._writer.background:
            self.collect_archive()  # a failing store raises here, before anything changes
        messages = self._fresh(messages)
        decoded = decode_inputs(
            messages,
            pipeline=self.pipeline,
            feature_names=self.feature_names,
            max_message_bytes=self.max_message_bytes,
            registry=self.registry,
            max_features=self.config.max_features,
        )
        rows = decoded.rows
        out = MonitorOutput(
            rows=len(rows), dead_letters=decoded.dead_letters, empty_messages=decoded.empty
        )
        if len(rows):
            self._adopt_features(rows.feature_names)
            # Without dead letters or empty messages, every message has rows.
            self._hold_sources(messages, rows, every=not (decoded.dead_letters or decoded.empty))
            self._unarchived.append(rows)
            if sum(len(r) for r in self._unarchived) >= self.archive_rows:
                if self._writer.background:
                    self._submit()
                    self.collect_archive()
                else:
                    try:
                        self.flush()
                    except Exception:
                        # The store is failing: leave no trace of this call, the transport
                        # delivers these messages again (their offsets did not advance).
                        self._unarchived.pop()
                        for m in messages:
                            key = (m.topic, m.partition, m.offset)
                            self._sources.pop(key, None)
                            self._pending_sources.pop(key, None)
                        raise
        # Next offset per partition: the last message of each wins, as in offset order.
        self._folded.update(
            zip(map(_SOURCE, messages), map(add, map(_OFFSET, messages), repeat(1)), strict=True)
        )
        if len(rows):
            for p, count in _partition_counts(rows.partitions):
                self._seen[p] = self._seen.get(p, 0) + count
            if self._bootstrap_watch.due():
                self._adopt_bootstrap()
            if self._template is None:
                rows = self._feed_bootstrap(rows)
            elif self._extension is not None and self.rows_seen >= self._extension.next_at:
                self._try_extend_reference()
            if len(rows) and self._template is not None:
                self._monitor_rows(rows, out)
        out.dead_letters.extend(self.release_dead_letters())
        out.dead_letters = [self._fit_for_dlq(d) for d in out.dead_letters]
        out.rows_seen = self.rows_seen
        return out

    def next_offset(self, topic: str, partition: int) -> int | None:
        """The first offset of ``topic``/``partition`` that may not be committed yet: every
        message below it is archived or dead-lettered and folded into the state."""
        waiting = [o for t, p, o in self._sources if p == partition and t == topic]
        return min(waiting) if waiting else self._folded.get((topic, partition))

    def flush(self) -> None:
        """Archive the rows still pending (see ``archive_rows``) as one segment, and wait for
        every segment under way.

        If a segment cannot be written, each message's rows are tried on their own (a few
        times): the ones that still fail become ``poison`` dead letters, handed out by the
        next `process` (or `release_dead_letters`), and hold their partition's `next_offset`
        until then. If no message can be archived the store itself is failing: the error is
        raised, nothing is lost (the rows wait for the next flush, their offsets held).
        """
        self._submit()
        self._writer.wait()
        self.collect_archive()

    def submit_archive(self) -> Future[Any]:
        """Hand the pending rows to the archive writer without waiting; the future is done
        once every row submitted so far is written (or failed).

        A checkpoint that does not wait for the archive: take ``submit_archive()``, then
        ``state_bytes(partitions, flush=False)`` and the offsets of `covered_offset`; once
        the future is done, `collect_archive` (raises if the store failed: drop the
        checkpoint), send `release_dead_letters`, and only then save the state and commit.
        """
        self._submit()
        return self._writer.barrier()

    def collect_archive(self) -> None:
        """Take the outcome of every finished segment write: its messages stop holding their
        offsets, the ones it could not archive become held ``poison`` dead letters. Segments
        the store refused whole go back to the pending rows (offsets still held) and the
        store's error is raised."""
        done = self._writer.completed()
        if any(s.future.exception() is not None for s in done):
            self._writer.wait()  # take every later outcome too, so the order is kept
            done += self._writer.completed()
        refused: list[Segment] = []
        for segment in done:
            if segment.future.exception() is not None:
                refused.append(segment)
                continue
            outcome = segment.outcome()
            if not outcome.failed:  # every message archived (the usual case): in bulk
                deque(map(self._sources.pop, segment.sources, repeat(None)), maxlen=0)
                continue
            failed = set(outcome.failed)
            for key in segment.sources:
                if key not in failed:
                    self._sources.pop(key, None)
                elif key in self._sources:  # not moved to another worker meanwhile
                    self._held.append(
                        dead_letter(
                            self._sources[key],
                            self.pipeline,
                            DeadLetterReason.POISON,
                            f"its rows passed validation but could not be archived in "
                            f"{ARCHIVE_ATTEMPTS} attempts: "
                            f"{type(outcome.error).__name__}: {outcome.error}",
                        )
                    )
        if refused:
            self._unarchived = [*(p for s in refused for p in s.parts), *self._unarchived]
            waiting = {k: m for s in refused for k, m in s.sources.items() if k in self._sources}
            self._pending_sources = {**waiting, **self._pending_sources}
            raise refused[0].outcome_error()

    def covered_offset(self, topic: str, partition: int) -> int | None:
        """The next offset of ``topic``/``partition`` folded into the state, archived or
        dead-lettered once every segment submitted so far is written and collected."""
        return self._folded.get((topic, partition))

    def _submit(self) -> Segment | None:
        if not self._unarchived:
            return None
        parts, self._unarchived = self._unarchived, []
        sources, self._pending_sources = self._pending_sources, {}
        return self._writer.submit(parts, sources)

    def _hold_sources(self, messages: Sequence[RawMessage], rows: Rows, every: bool) -> None:
        """Remember the messages whose rows wait for the archive (their offsets wait too);
        ``every``: each of ``messages`` has rows in ``rows``."""
        held = dict(zip(map(_KEY, messages), messages, strict=True))
        if not every:  # some messages were dead letters or empty
            with_rows = set(zip(rows.partitions.tolist(), rows.offsets.tolist(), strict=True))
            if len(with_rows) != len(held):
                held = {k: m for k, m in held.items() if (k[1], k[2]) in with_rows}
        self._sources.update(held)
        self._pending_sources.update(held)

    def release_dead_letters(self) -> list[DeadLetter]:
        """The held ``poison`` dead letters of archive failures, handed out once (`process`
        includes them in its output); their offsets are free once they are out."""
        held, self._held = self._held, []
        for letter in held:
            key = (letter.source_topic, letter.source_partition, letter.source_offset)
            self._sources.pop(key, None)  # type: ignore[arg-type]
        return held

    def _fit_for_dlq(self, letter: DeadLetter) -> DeadLetter:
        """A dead letter the broker accepts: an original too large to travel inside it (base64
        adds a third) is kept in the artifact store and the letter carries its key and size."""
        if len(letter.payload) * 4 // 3 + _DEAD_LETTER_OVERHEAD <= self.max_dead_letter_bytes:
            return letter
        digest = hashlib.sha256(letter.payload).hexdigest()
        key = f"dlq/{self.pipeline}/{digest}.bin"
        self.store.artifacts.put(key, letter.payload)
        return letter.model_copy(update={"payload": b"", "payload_ref": key})

    @property
    def holds_labels(self) -> bool:
        """Whether labels that came before the pipeline's features wait in memory (a
        transport must not commit their offsets yet: they are archived with the first rows)."""
        return bool(self._early_labels)

    def process_labels(self, messages: Sequence[RawMessage]) -> LabelOutput:
        """Validate ``{p}.labels`` messages, archive the good ones, dead-letter the rest.

        Labels that arrive before the pipeline's features are known are held in memory and
        archived with the first input rows (a transport that must not lose them on a crash
        commits their offsets only once `holds_labels` is false).
        """
        decoded = decode_labels(
            messages,
            pipeline=self.pipeline,
            registry=self.registry,
            label_kind=self._label_kind.kind(),
        )
        self._label_kind.observe(decoded.table)
        count = 0
        if decoded.table is not None:
            count = decoded.table.num_rows
            overflow = self._early_labels.add(decoded.table)
            self._archive_labels()
            decoded.dead_letters.extend(overflow)
        dead = [self._fit_for_dlq(d) for d in decoded.dead_letters]
        return LabelOutput(labels=count, dead_letters=dead)

    def _archive_labels(self) -> None:
        if self._early_labels and self._ensure_registered():
            archive = self._archive()
            for table in self._early_labels.tables():
                archive.append_labels(table)
            self._early_labels.clear()

    def on_model_version(self, event: ModelVersionEvent) -> None:
        """A new champion: its training data becomes the reference; a new episode begins.

        The event is only a wake-up call: what is installed is the champion the lifecycle
        store records, so an event naming a deployment or data version the store does not
        hold changes nothing (transports verify the signature before this too).
        """
        if event.alias != "champion" or event.pipeline != self.pipeline:
            return
        self.sync_reference()

    def sync_reference(self) -> None:
        """Refit on the champion's data version if the store has a new champion (a worker
        that does not own the ``{p}.model-versions`` partition learns of deployments so)."""
        try:
            champion = self.store.current(self.pipeline, "champion")
        except NotFoundError:
            return
        if champion is not None:
            deployment = self.store.history(self.pipeline, "champion")[-1]
            self._install_reference(deployment.id, champion.data_version_id, champion.id)
        else:
            self._adopt_bootstrap()
        if self._extension is not None:
            self._try_extend_reference()

    def _install_reference(
        self, deployment_id: str, data_version_id: str | None, model_version_id: str
    ) -> None:
        """Make the champion deployment's training data the reference; a new episode begins.

        A redeployed model (a recurring concept, a rollback) may bring back the reference in
        force already: no refit then, but still a new episode, so its alarms are heard. A
        data version of fewer than ``reference_rows`` rows is installed at once and grown
        from the archive (`_extend_reference`) as rows of its concept come in.
        """
        if deployment_id == self.reference_deployment_id:
            return
        self._extension = None
        in_force = (self.reference_data_version, self._reference_base)
        if data_version_id and data_version_id not in in_force:
            self._fit_reference_from_store(data_version_id)
        if self.extend_references and data_version_id == self.reference_data_version:
            assert data_version_id is not None
            version = self.store.data_version(data_version_id)
            wanted = int(self.config.detector.reference_rows)
            if version.row_count < wanted and version.event_time_min is not None:
                self._extension = Extension(
                    data_version_id,
                    deployment_id,
                    model_version_id,
                    as_utc(version.event_time_min),
                    version.row_count,
                    next_at=0,
                )
        self.reference_deployment_id = deployment_id
        for monitor in self._monitors.values():
            monitor.window.since_alarm = None
        if self._pool is not None:
            self._pool.new_episode()

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the monitors and offsets of ``partitions`` (moved to another worker)."""
        gone = set(partitions)
        for p in gone:
            self._monitors.pop(p, None)
            self._seen.pop(p, None)
        self._folded = {k: v for k, v in self._folded.items() if k[1] not in gone}
        self._sources = {k: v for k, v in self._sources.items() if k[1] not in gone}
        self._pending_sources = {k: v for k, v in self._pending_sources.items() if k[1] not in gone}

    # ------------------------------------------------------------------ state
    def state_bytes(self, partitions: Iterable[int] | None = None, *, flush: bool = True) -> bytes:
        """Checkpoint of the step (or of the shared state plus ``partitions`` only).

        Pending rows are archived first, so a checkpoint never covers rows that are not in
        the archive: a transport that saves this before committing offsets is crash-safe.
        ``flush=False`` takes the checkpoint without waiting: it covers what `covered_offset`
        says, and may be saved only once `submit_archive`'s future is done and collected.
        """
        if flush:
            self.flush()
        chosen = sorted(self._monitors if partitions is None else set(partitions))
        blobs: list[bytes] = []

        def add(data: bytes) -> int:
            blobs.append(data)
            return len(blobs) - 1

        header: dict[str, Any] = {
            "pipeline": self.pipeline,
            "feature_names": list(self.feature_names) if self.feature_names else None,
            "reference": self.reference_data_version,
            "reference_deployment": self.reference_deployment_id,
            "reference_base": self._reference_base,
            "rows_seen": {
                str(p): n for p, n in self._seen.items() if partitions is None or p in chosen
            },
            "template": None if self._template is None else add(self._template),
            "ood": None if self._ood is None else add(self._ood.to_bytes()),
            "next_offsets": [
                [t, p, self.next_offset(t, p) if flush else self.covered_offset(t, p)]
                for (t, p) in self._folded
                if partitions is None or p in chosen
            ],
            "bootstrap": [add(_rows_bytes(r)) for r in self._bootstrap],
            "extension": None if self._extension is None else self._extension.to_json(),
            "monitors": {},
        }
        for p in chosen:
            m = self._monitors.get(p)
            if m is None:
                continue
            m.flush_sketch()
            header["monitors"][str(p)] = {
                "detector": add(m.detector.to_bytes()),
                "sketch": add(m.sketch.to_bytes()),
                "window": m.window.to_json(),
            }
        head = json.dumps(header).encode()
        sizes = [len(b) for b in blobs]
        meta = json.dumps(sizes).encode()
        return b"".join(
            [_STATE_MAGIC, struct.pack(">II", len(head), len(meta)), head, meta, *blobs]
        )

    def restore(self, data: bytes, partitions: Iterable[int] | None = None) -> None:
        """Load a checkpoint written by `state_bytes` (only ``partitions``' monitors if given).

        The shared state (reference, features, bootstrap rows) is taken from ``data`` when it
        is further along than this step's (it has a reference and this step has none).
        """
        header, blobs = _unpack_state(data)
        if header["pipeline"] != self.pipeline:
            raise ValueError(
                f"state of pipeline {header['pipeline']!r} cannot restore pipeline "
                f"{self.pipeline!r}: use the checkpoint of the same pipeline"
            )
        wanted = None if partitions is None else set(partitions)
        take_shared = self._template is None and (
            header["template"] is not None or not self._bootstrap
        )
        if take_shared:
            if header["feature_names"]:
                self.feature_names = tuple(header["feature_names"])
            self.reference_data_version = header["reference"]
            self.reference_deployment_id = header.get("reference_deployment")
            self._reference_base = header.get("reference_base")
            self._template = None if header["template"] is None else blobs[header["template"]]
            self._summarizer, self._summary_rows = None, 0
            self._ood = (
                None if header["ood"] is None else OODScorer.from_bytes(blobs[header["ood"]])
            )
            self._bootstrap = [_rows_from_bytes(blobs[i]) for i in header["bootstrap"]]
        if header["reference"] != self.reference_data_version:
            return  # monitors fitted on another reference are of no use now
        if header.get("reference_deployment") == self.reference_deployment_id:
            # The same short reference: resume its extension where the checkpoint left it
            # (bounded by the alarms it saw, or given up).
            saved = header.get("extension")
            self._extension = None if saved is None else Extension.from_json(saved)
        for topic, p, offset in header["next_offsets"]:
            if wanted is None or p in wanted:
                self._folded[(topic, int(p))] = int(offset)
        for key, count in header["rows_seen"].items():
            if wanted is None or int(key) in wanted:
                self._seen[int(key)] = int(count)
        for key, m in header["monitors"].items():
            p = int(key)
            if wanted is not None and p not in wanted:
                continue
            self._monitors[p] = _Partition(
                DriftDetector.from_bytes(blobs[m["detector"]]),
                Coreset.from_bytes(blobs[m["sketch"]]),
                AlarmWindow.from_json(m["window"], p),
            )

    # ------------------------------------------------------------------ internals
    def _known_feature_names(self) -> tuple[str, ...] | None:
        try:
            return tuple(self.store.pipeline(self.pipeline).feature_names)
        except NotFoundError:
            names = self.config.feature_names
            return tuple(names) if names else None

    def _adopt_features(self, names: tuple[str, ...]) -> None:
        if self.feature_names is None:
            self.feature_names = names
        self._ensure_registered()
        self._archive_labels()

    def _archive(self) -> Archive:
        # Opened once: opening reads the pipeline's row from the store, a round trip that
        # cost as much as encoding the segment itself.
        if self._archive_handle is None:
            self._archive_handle = self.store.archive(self.pipeline)
        return self._archive_handle

    def _ensure_registered(self) -> bool:
        if self._registered:
            return True
        if self.feature_names is None:
            return False
        try:
            self.store.pipeline(self.pipeline)
        except NotFoundError:
            self.store.ensure_pipeline(
                self.pipeline, list(self.feature_names), self.config.model_dump(mode="json")
            )
        self._registered = True
        return True

    def _fit_reference_from_store(self, data_version_id: str) -> None:
        table = self.store.read_data_version(data_version_id, verify=True)
        names = self.feature_names or tuple(n for n in table.column_names if n not in _NON_FEATURES)
        x = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64)
        self.feature_names = tuple(names)
        self._fit_reference(x, data_version_id)

    def _fit_reference(self, x: np.ndarray, data_version_id: str) -> None:
        cfg = self.config.detector
        detector = make_detector(cfg.kind, **{**cfg.params, "ert": cfg.ert})
        detector.fit(x, list(self.feature_names or ()))
        self._template = detector.to_bytes()
        self._ood = OODScorer().fit(x, list(self.feature_names or ())) if self.emit_ood else None
        self.reference_data_version = data_version_id
        self._reference_base = None
        self._bootstrap = []
        self._monitors = {}
        self._summarizer, self._summary_rows = None, 0

    def _try_extend_reference(self) -> None:
        """`_extend_reference`, retried later if the store fails meanwhile: the short
        reference stays in force, and the rows of this batch are still monitored."""
        try:
            self._extend_reference()
        except ArtifactCorruptedError as exc:  # the champion's rows no longer hash: stop here
            self._extension = None
            log.error("not growing the reference: %s", exc)
        except (StoreError, OSError) as exc:
            ext = self._extension
            if ext is not None:
                self._extension = dataclasses.replace(ext, next_at=self.rows_seen + 1)
            log.warning("could not grow the reference yet, retrying later: %s", exc)

    def _extend_reference(self) -> None:
        """Grow the short reference toward ``reference_rows`` rows from the archive; install
        the full one (a data version appended to the champion's) once the archive holds it.

        Deterministic given the archive: the champion's rows, then the oldest archived rows
        from its first event time on, up to the earliest change an alarm of this model's
        reference placed after that (the store's drift events and this step's own). Gives up,
        keeping the short reference, when fewer rows than needed lie before such a change.
        """
        ext = self._extension
        assert ext is not None
        for event in self._recorded_alarms(ext):
            ext = ext.bound(event.change_start)
        wanted = int(self.config.detector.reference_rows)
        base = self.store.read_data_version(ext.base, verify=True)
        names = list(self.feature_names or ())
        assert self._template is not None
        # Rows the chart must watch after a row before it may enter the reference: the long
        # window, time for a change that began there to show in the statistic.
        lag = DriftDetector.from_bytes(self._template).windows[0]
        table, missing = extended_table(base, self._archive(), ext, wanted, names, lag)
        if table is None:
            # Rows before a known change are all archived already: they will not grow.
            self._extension = (
                None
                if ext.until is not None
                else dataclasses.replace(ext, next_at=self.rows_seen + missing)
            )
            return
        version = self.store.snapshot(self.pipeline, table, parents=[ext.base], combine="append")
        x = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64)
        self._fit_reference(x, version.id)
        self._reference_base = ext.base
        self._extension = None

    def _recorded_alarms(self, ext: Extension) -> list[DriftEvent]:
        """The stored drift events raised while ``ext``'s model's data was the reference."""
        deployments = {d.id for d in self.store.deployments_of(ext.model_version)}
        deployments.add(ext.deployment)
        events = []
        for record in self.store.drift_events(self.pipeline, limit=_RECORDED_ALARMS):
            if record.payload.get("reference_deployment_id") not in deployments:
                continue
            try:
                events.append(DriftEvent.model_validate(record.payload))
            except ValueError:
                continue  # not an event this version can read: it bounds nothing
        return events

    def _feed_bootstrap(self, rows: Rows) -> Rows:
        """Collect rows until the bootstrap reference is full; return the rows left over."""
        need = int(self.config.detector.reference_rows) - sum(len(r) for r in self._bootstrap)
        if len(rows) < need:
            self._bootstrap.append(rows)
            return rows.take(np.zeros(0, np.int64))
        self._bootstrap.append(rows.take(np.arange(need)))
        self._adopt_bootstrap()  # another worker's bootstrap, if any: one fit, not two
        if self._template is not None:
            return rows  # not part of the reference: monitored
        reference = Rows.concat(self._bootstrap, rows.feature_names)
        # The same rows give the same reference and fit, whatever order the fetches came in;
        # the oldest bootstrap of the pipeline's workers is the one they all use.
        ref = reference.take(
            canonical_order(reference.timestamps_us, reference.partitions, reference.offsets)
        )
        mark = marker(self.topics.inputs, ref.partitions, ref.offsets)
        version = self.store.snapshot(
            self.pipeline, ref.to_table(), combine="root", source_offsets=mark
        )
        self._fit_reference(ref.features, version.id)
        self._bootstrap_watch.start()
        self._adopt_bootstrap()
        return rows.take(np.arange(need, len(rows)))

    def _adopt_bootstrap(self) -> None:
        """Refit to the pipeline's bootstrap reference (the oldest of its workers') unless a
        champion's data is the reference or it is this worker's already."""
        if self.reference_deployment_id is not None:
            return
        try:
            chosen = pipeline_bootstrap(self.store, self.pipeline)
        except NotFoundError:
            return
        if chosen is not None and chosen != self.reference_data_version:
            self._fit_reference_from_store(chosen)

    def _monitor(self, partition: int) -> _Partition | None:
        if self._template is None:
            return None
        monitor = self._monitors.get(partition)
        if monitor is None:
            monitor = _Partition(DriftDetector.from_bytes(self._template), Coreset(k=SKETCH_K))
            self._monitors[partition] = monitor
        return monitor

    def _fresh(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        """The messages not yet folded into the state; remembers their offsets."""
        if len(set(map(_SOURCE, messages))) == 1:
            # One partition in rising offsets above the state's (the usual fetch): all fresh.
            offsets = list(map(_OFFSET, messages))
            folded = self._folded.get(_SOURCE(messages[0]), 0)
            if offsets[0] >= folded and all(map(lt, offsets, islice(offsets, 1, None))):
                return list(messages)
        fresh = []
        seen = dict(self._folded)
        for m in messages:
            key = (m.topic, m.partition)
            if m.offset >= seen.get(key, 0):
                fresh.append(m)
                seen[key] = m.offset + 1
        return fresh

    def _monitor_rows(self, rows: Rows, out: MonitorOutput) -> None:
        best: tuple[float, float, float] | None = None
        partitions = _partition_counts(rows.partitions)
        for p, _ in partitions:
            part = rows.take(rows.partitions == p) if len(partitions) > 1 else rows
            monitor = self._monitor(int(p))
            assert monitor is not None
            monitor.sample(part.features)
            if self._ood is not None:
                out.ood_flags.extend(self._ood_flags(part))
            if self.pooled:
                out.summaries.extend(self._summaries(int(p), part))
                continue
            ratio = self._detect(int(p), monitor, part, out)
            if ratio is not None and (best is None or ratio[0] >= best[0]):
                best = ratio
        if best is not None:
            out.statistic, out.threshold = best[1], best[2]

    def _detect(
        self, p: int, monitor: _Partition, part: Rows, out: MonitorOutput
    ) -> tuple[float, float, float] | None:
        """Per-partition detection of ``part``; returns the closest (ratio, stat, threshold)."""
        best: tuple[float, float, float] | None = None
        x, start = part.features, 0
        while start < len(part):
            # Bounded chunks: after an alarm the rest of the chunk is fed again to the
            # reset detector, so an alarm costs at most one chunk, not the whole batch.
            stop = min(len(part), start + DETECT_CHUNK)
            result = monitor.detector.update(x[start:stop])
            ratio = result.statistic / result.threshold if result.threshold else 0.0
            if best is None or ratio >= best[0]:
                best = (ratio, result.statistic, result.threshold)
            if not result.drift or result.index is None:
                monitor.extend_window(part, start, stop)
                start = stop
                continue
            end = start + result.index + 1
            monitor.extend_window(part, start, end)
            window = monitor.window
            if window.since_alarm is None or window.since_alarm >= self.alarm_holdoff:
                row = end - 1
                alarm = (p, int(part.offsets[row]), str(part.event_ids[row].as_py()))
                out.drift_events.append(self._drift_event(window, alarm, result))
                window.since_alarm = 0
            else:
                out.suppressed_alarms += 1
            monitor.detector.reset()
            window.start()
            start = end
        return best

    def _summaries(self, p: int, part: Rows) -> list[bytes]:
        """The detector summaries of ``part`` (rows of input partition ``p``), each within
        the size a summary may have."""
        if self._summarizer is None:
            assert self._template is not None
            self._summarizer = DriftDetector.from_bytes(self._template)
        assert self.reference_data_version is not None
        first_row = self._seen[p] - len(part)
        if self._summary_rows == 0:  # rows per summary that stay under the size limit
            one = self._summarizer.partial_state(part.features[:1])
            per_row = one.features.nbytes + one.rows.nbytes + 16
            self._summary_rows = max(1, min(MAX_ROWS, (MAX_SUMMARY_BYTES - 8192) // per_row))
        out: list[bytes] = []
        for start in range(0, len(part), self._summary_rows):
            stop = min(len(part), start + self._summary_rows)
            partial = self._summarizer.partial_state(part.features[start:stop])
            summary = Summary(
                self.pipeline,
                self.reference_data_version,
                p,
                first_row + start,
                partial.features,
                partial.rows,
                part.offsets[start:stop],
                part.timestamps_us[start:stop],
            )
            out.append(encode_summary(summary))
        return out

    def merge_summaries(self, messages: Sequence[RawMessage]) -> MonitorOutput:
        """Fold ``{p}.detector-summaries`` messages into the pipeline chart (pooled detection,
        on the worker that owns that topic); return its DriftEvents.

        Each message is validated on its own: one that is not a summary of this pipeline
        (garbled, oversized, forged shapes, NaN) becomes a dead letter naming the reason, and
        the chart goes on. Summaries of another reference than the one in force (sent before
        a new champion's data became the reference) are skipped and counted in
        ``skipped_summaries``, as are summaries that arrive before this worker has a
        reference. Rows a summary repeats (re-sent after a restart) are folded once.
        """
        out = MonitorOutput(rows=0)
        pool: PipelinePool | None = None
        fitting: list[Summary] = []
        for message in messages:
            try:
                summary = decode_summary(message.value, pipeline=self.pipeline)
                pool = self._pool_for(summary.reference)
                if pool is None:
                    out.skipped_summaries += 1
                    continue
                pool.detector.check_partial(PartialState(summary.features, summary.rows))
            except (SummaryError, InvalidInputError) as exc:
                reason = getattr(exc, "reason", DeadLetterReason.SCHEMA_VIOLATION)
                out.dead_letters.append(
                    dead_letter(message, self.pipeline, reason, f"detector summary: {exc}")
                )
                continue
            fitting.append(summary)
        pool = self._pool
        if pool is not None and fitting:
            fitting = [s for s in fitting if s.reference == pool.reference]
            before, held = pool.rows_seen, pool.held
            for alarm in pool.merge_many(fitting):
                key = (alarm.partition, alarm.offset, f"row-{alarm.row}")
                out.drift_events.append(self._drift_event(alarm.window, key, alarm.result))
            out.rows = pool.rows_seen - before
            out.suppressed_alarms = pool.held - held
            if pool.last is not None:
                out.statistic, out.threshold = pool.last.statistic, pool.last.threshold
        out.rows_seen = 0 if self._pool is None else self._pool.rows_seen
        return out

    def _pool_for(self, reference: str) -> PipelinePool | None:
        """The pipeline chart that merges summaries of ``reference`` (None: skip them)."""
        pool = self._pool
        if self.reference_data_version is None or self._template is None:
            # No reference here yet: only a restored chart of that reference can merge.
            return pool if pool is not None and pool.reference == reference else None
        if reference != self.reference_data_version:
            return None
        if pool is None or pool.reference != reference:
            pool = self._pool = PipelinePool(
                self._template, reference=reference, holdoff=self.alarm_holdoff
            )
        return pool

    def pool_state_bytes(self) -> bytes | None:
        """Checkpoint of the pipeline chart (None while this worker merged nothing)."""
        return None if self._pool is None else self._pool.to_bytes()

    def restore_pool(self, data: bytes) -> None:
        """Load a pipeline chart saved by `pool_state_bytes` (this worker now owns it)."""
        pool = PipelinePool.from_bytes(data)
        if self.reference_data_version is None or pool.reference == self.reference_data_version:
            self._pool = pool

    def drop_pool(self) -> None:
        """The summaries topic moved to another worker: forget the chart (it restores it)."""
        self._pool = None

    @property
    def pool(self) -> PipelinePool | None:
        """The pipeline chart this worker merges into (pooled detection), if any."""
        return self._pool

    def _drift_event(
        self, window: AlarmWindow, alarm: tuple[int, int, str], result: Any
    ) -> DriftEvent:
        event = drift_event(
            pipeline=self.pipeline,
            detector=self.config.detector.kind,
            reference_data_version=self._reference_base or self.reference_data_version,
            reference_deployment_id=self.reference_deployment_id,
            topic=self.topics.inputs,
            window=window,
            alarm=alarm,
            result=result,
        )
        if self._extension is not None:  # the reference's concept ends where this change began
            self._extension = self._extension.bound(event.change_start)
        return event

    def _ood_flags(self, rows: Rows) -> list[OODFlag]:
        assert self._ood is not None
        scores = self._ood.score(rows.features)
        threshold = float(self._ood.threshold)
        flagged = np.flatnonzero(scores > threshold)
        ids = rows.event_ids.take(flagged).to_pylist()
        return [
            OODFlag(
                event_id=event_id,
                pipeline=self.pipeline,
                score=float(scores[i]),
                threshold=threshold,
                timestamp=from_us(int(rows.timestamps_us[i])),
            )
            for i, event_id in zip(flagged, ids, strict=True)
        ]


_RECORDED_ALARMS = 1000
"""Newest stored drift events searched for alarms that end a reference's concept."""


def _partition_counts(partitions: np.ndarray) -> list[tuple[int, int]]:
    """(partition, rows) of each partition in ``partitions``, ascending; one comparison when
    they are all the same (the usual batch), not a sort."""
    if len(partitions) and (partitions == partitions[0]).all():
        return [(int(partitions[0]), len(partitions))]
    values, counts = np.unique(partitions, return_counts=True)
    return list(zip(values.tolist(), counts.tolist(), strict=True))


_NON_FEATURES = frozenset(
    {
        "event_id",
        "timestamp",
        "model_version",
        "prediction",
        "probabilities",
        "label",
        "topic",
        "partition",
        "offset",
    }
)


def _rows_bytes(rows: Rows) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        event_ids=np.array(rows.event_ids.to_pylist(), dtype=str),
        timestamps_us=rows.timestamps_us,
        features=rows.features,
        topics=np.array(rows.topics.to_pylist(), dtype=str),
        partitions=rows.partitions,
        offsets=rows.offsets,
        names=np.array(rows.feature_names, dtype=str),
    )
    return buf.getvalue()


def _rows_from_bytes(data: bytes) -> Rows:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Rows(
            tuple(str(n) for n in z["names"]),
            strings([str(e) for e in z["event_ids"]]),
            z["timestamps_us"],
            z["features"],
            strings([str(t) for t in z["topics"]]),
            z["partitions"],
            z["offsets"],
        )


def saved_offsets(data: bytes) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset a checkpoint of `MonitorStep.state_bytes` covers:
    where a transport starts reading the partition again (it reads the header only).

    >>> head = b'{"next_offsets": [["p.inputs", 3, 41]]}'
    >>> saved_offsets(_STATE_MAGIC + struct.pack(">II", len(head), 2) + head + b"[]")
    {('p.inputs', 3): 41}
    """
    header = _state_header(data)
    return {(str(t), int(p)): int(o) for t, p, o in header.get("next_offsets", [])}


def _state_sizes(data: bytes) -> tuple[int, int, int]:
    """Where the header starts, and the header's and the blob-size list's lengths."""
    if data[: len(_STATE_MAGIC)] != _STATE_MAGIC:
        raise ValueError(
            f"not monitor state bytes (starts with {bytes(data[:8])!r}); pass the output of "
            "MonitorStep.state_bytes()"
        )
    pos = len(_STATE_MAGIC)
    n_head, n_meta = struct.unpack(">II", data[pos : pos + 8])
    return pos + 8, n_head, n_meta


def _state_header(data: bytes) -> dict[str, Any]:
    pos, n_head, _ = _state_sizes(data)
    header: dict[str, Any] = json.loads(data[pos : pos + n_head])
    return header


def _unpack_state(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    pos, n_head, n_meta = _state_sizes(data)
    header = json.loads(data[pos : pos + n_head])
    pos += n_head
    sizes = json.loads(data[pos : pos + n_meta])
    pos += n_meta
    blobs = []
    for size in sizes:
        blobs.append(bytes(data[pos : pos + size]))
        pos += size
    return header, blobs
