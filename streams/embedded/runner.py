"""EmbeddedRunner: the whole driftline loop in one process, without a broker.

The same parts as a Kafka deployment, wired through an `InMemoryBus` instead of a cluster:

```
rows ──► {p}.inputs ──► MonitorStep.process ──► {p}.drift ──► Retrainer.handle_drift
labels ─► {p}.labels ─► MonitorStep.process_labels        │      (and Retrainer.tick)
                                                          ▼
MonitorStep.on_model_version ◄── {p}.model-versions ◄── BusPublisher (store outbox)
```

Nothing here decodes, detects, selects, trains or gates:
`driftline.streams.monitor.step.MonitorStep`,
`driftline.retrainer.Retrainer` and the lifecycle store do, exactly as behind Faust and the
retrainer
service. The runner only moves messages and keeps a record of what happened (`RunResult`):
the statistic after every micro-batch, alarms, trainings and deployments, each placed at the
stream row where it happened, which is what the report and the composite evaluation need.

Training runs synchronously between micro-batches: the replay clock is the event time of the
rows, so a back-test gives the same result however fast the machine is. Labels come
``label_delay`` rows late; alarms are handed over at once and the retrainer waits for the
labels of the rows after the change point, exactly as behind Kafka.

>>> import tempfile, numpy as np
>>> from driftline.lifecycle_store import LifecycleStore
>>> from driftline.config.pipeline import PipelineConfig
>>> d = tempfile.mkdtemp()
>>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
>>> config = PipelineConfig(name="doc", detector={"reference_rows": 100, "ert": 1000,
...                                               "params": {"n_simulated": 20000}})
>>> rng = np.random.default_rng(0)
>>> stream = LabelledStream.from_arrays(rng.normal(size=(300, 2)), np.zeros(300, int), ["a", "b"])
>>> result = EmbeddedRunner(config, store).replay(stream)
>>> result.rows, len(result.points) > 0, result.alarms
(300, True, [])
>>> store.close()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.outcome import TrainingOutcome
from driftline.retrainer.service import Retrainer
from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    DriftEvent,
    InferenceBatch,
    InferenceEvent,
    LabelEvent,
    LabelRequest,
    ModelVersionEvent,
    ModelVersionSigner,
    ModelVersionVerifier,
    Topics,
)
from driftline.streams.embedded.bus import InMemoryBus
from driftline.streams.loops.monitor import POOL_STATE_KEY, MonitorLoop
from driftline.streams.loops.retrainer import RetrainerLoop
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorOutput, MonitorStep
from driftline.streams.transport import Offsets, Record

__all__ = [
    "AlarmRecord",
    "BusPublisher",
    "BusTransport",
    "DeploymentRecord",
    "EmbeddedRunner",
    "LabelledStream",
    "MonitorPoint",
    "RunResult",
    "TrainingRecord",
]

_JSON = ((CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),)
_ARROW = ((CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode()),)

Progress = Callable[[int, "RunResult"], None]
"""Called after every micro-batch with the rows replayed so far and the record so far."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MonitorPoint(_Record):
    """The detector's statistic and threshold after the micro-batch ending at ``row``."""

    row: int
    statistic: float | None
    threshold: float | None


class AlarmRecord(_Record):
    """A DriftEvent the monitor raised, placed at the stream row where it fired."""

    row: int
    drift_id: str
    statistic: float
    threshold: float
    episode: str
    features: list[str] = Field(default_factory=list)


class TrainingRecord(_Record):
    """One training decision of the retrainer (completed, skipped or failed) and its outcome.

    ``warm_start_from`` names the past model version whose lifecycle was transferred (None for
    a training from scratch); ``warm_start_reason`` says why it was chosen.
    """

    row: int
    training_id: str
    trigger: str
    status: str
    reason: str = ""
    model_version_id: str | None = None
    data_version_id: str | None = None
    warm_start_from: str | None = None
    warm_start_reason: str = ""
    deployed: bool = False
    seconds: float = 0.0
    rows: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)


class DeploymentRecord(_Record):
    """A model version that became the champion at stream row ``row``."""

    row: int
    deployment_id: str
    model_version_id: str
    data_version_id: str | None = None
    parent_model_version_id: str | None = None
    reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


class RunResult(_Record):
    """Everything one run of a policy did, in stream rows, ready to score and to chart."""

    policy: str
    pipeline: str
    rows: int
    seconds: float
    points: list[MonitorPoint] = Field(default_factory=list)
    alarms: list[AlarmRecord] = Field(default_factory=list)
    trainings: list[TrainingRecord] = Field(default_factory=list)
    deployments: list[DeploymentRecord] = Field(default_factory=list)
    dead_letters: int = 0
    label_requests: int = 0


@dataclass(frozen=True)
class LabelledStream:
    """Rows to replay in order, with their event times, and labels that arrive late.

    The label of row ``i`` is sent once row ``i + label_delay`` has been sent; rows whose
    label is missing (``None`` in an object array, NaN in a float one) get none.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    timestamps: np.ndarray
    event_ids: list[str]
    label_delay: int = 0

    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        feature_names: Sequence[str],
        *,
        timestamps: np.ndarray | None = None,
        event_ids: Sequence[str] | None = None,
        label_delay: int = 0,
        t0: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(seconds=1),
    ) -> LabelledStream:
        """Build a stream; event times default to ``t0 + i * step``, ids to ``row-{i}``."""
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        if X.ndim != 2 or X.shape[1] != len(feature_names):
            raise ValueError(
                f"X has shape {X.shape} but {len(feature_names)} feature names were given: "
                "pass one column per feature name"
            )
        if len(y) != n:
            raise ValueError(f"X has {n} rows but y has {len(y)}: pass one label per row")
        if label_delay < 0:
            raise ValueError(f"label_delay must be >= 0 rows, got {label_delay}")
        if timestamps is None:
            start = np.datetime64(t0.astimezone(UTC).replace(tzinfo=None), "us")
            timestamps = start + np.arange(n) * np.timedelta64(step, "us")
        stamps = np.asarray(timestamps).astype("datetime64[us]")
        if len(stamps) != n:
            raise ValueError(f"{len(stamps)} timestamps for {n} rows: pass one per row")
        if n > 1 and np.any(np.diff(stamps) < np.timedelta64(0, "us")):
            raise ValueError("timestamps go backwards: sort the rows by event time first")
        ids = [f"row-{i}" for i in range(n)] if event_ids is None else [str(e) for e in event_ids]
        if len(ids) != n or len(set(ids)) != n:
            raise ValueError("event_ids must give every row its own id")
        return cls(X, np.asarray(y), list(feature_names), stamps, ids, label_delay)

    def __len__(self) -> int:
        return len(self.X)

    def time(self, row: int) -> datetime:
        """Event time of ``row`` (UTC)."""
        return _to_datetime(self.timestamps[row])

    def row_at(self, t: datetime) -> int:
        """The last row whose event time is at or before ``t``."""
        stamp = np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "us")
        return max(0, int(np.searchsorted(self.timestamps, stamp, side="right")) - 1)


class BusPublisher:
    """The retrainer's `Publisher` on an `InMemoryBus`: the embedded twin of `KafkaPublisher`.

    >>> bus = InMemoryBus()
    >>> BusPublisher(bus, Topics("p")).publish_label_request(
    ...     LabelRequest(request_id="r", pipeline="p", event_ids=["e"], reason="few labels"))
    >>> bus.end_offsets("p.label-requests")
    [1]
    """

    def __init__(
        self, bus: InMemoryBus, topics: Topics, signer: ModelVersionSigner | None = None
    ) -> None:
        self.bus = bus
        self.topics = topics
        # In one process a fresh key per run is enough: only this runner verifies (model
        # versions in its monitor, drift events before its retrainer).
        self.signer = signer or ModelVersionSigner.generate()
        bus.create_topic(topics.model_versions, compact=True)

    def publish_model_version(self, event: ModelVersionEvent) -> None:
        signed = self.signer.sign(event)
        self.bus.produce(
            self.topics.model_versions, signed.to_json(), key=signed.key, headers=_JSON
        )

    def publish_label_request(self, request: LabelRequest) -> None:
        key = request.pipeline.encode()
        self.bus.produce(self.topics.label_requests, request.to_json(), key=key, headers=_JSON)


class BusTransport:
    """`driftline.streams.transport.Transport` on an `InMemoryBus`, for consumer group ``group_id``.

    State stays in memory: the process that holds the bus holds the state.
    """

    def __init__(self, bus: InMemoryBus, group_id: str = "driftline-monitor") -> None:
        self.bus = bus
        self.group_id = group_id
        self._state: dict[bytes, bytes] = {}

    async def send(self, records: Sequence[Record]) -> None:
        for r in records:
            self.bus.produce(r.topic, r.value, key=r.key, headers=r.headers)

    async def commit(self, offsets: Offsets) -> None:
        self.bus.commit(self.group_id, offsets)

    def save_state(self, partition: int, key: bytes, value: bytes) -> None:
        self._state[key] = value

    def load_state(self, key: bytes) -> bytes | None:
        return self._state.get(key)

    def save_pool_state(self, value: bytes) -> None:
        self._state[POOL_STATE_KEY] = value

    def load_pool_state(self) -> bytes | None:
        return self._state.get(POOL_STATE_KEY)


class EmbeddedRunner:
    """One pipeline's monitor and retrainer on an in-process bus, over one lifecycle store.

    ``batch_size`` rows are sent per micro-batch (one Arrow message, or one JSON message per
    row with ``encoding="json"``); ``policy`` names the run in its `RunResult`.
    """

    def __init__(
        self,
        config: PipelineConfig,
        store: LifecycleStore,
        *,
        bus: InMemoryBus | None = None,
        batch_size: int = 100,
        partitions: int = 1,
        encoding: str = "arrow",
        emit_ood: bool = False,
        policy: str = "drift",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 row, got {batch_size}")
        if encoding not in ("arrow", "json"):
            raise ValueError(f"encoding must be 'arrow' or 'json', got {encoding!r}")
        self.config = config
        self.store = store
        self.pipeline = config.name
        self.topics = Topics(config.name)
        self.bus = bus or InMemoryBus(partitions)
        if self.topics.detector_summaries not in self.bus.topics():
            self.bus.create_topic(self.topics.detector_summaries, partitions=1)
        self.batch_size = batch_size
        self.encoding = encoding
        self.policy = policy
        self.monitor = MonitorStep(config, store, pipeline=self.pipeline, emit_ood=emit_ood)
        self.publisher = BusPublisher(self.bus, self.topics)
        self._verifier = ModelVersionVerifier([self.publisher.signer.public_key])
        self.retrainer = Retrainer(store, config, self.publisher)
        transport = BusTransport(self.bus)
        self.monitor_loop = MonitorLoop(self.monitor, transport, signer=self.publisher.signer)
        self.retrainer_loop = RetrainerLoop(
            self.retrainer,
            store,
            self.publisher,
            self.pipeline,
            send_dead_letter=lambda d: self.bus.produce(self.topics.dlq, d.to_json()),
            verifier=self._verifier,
            on_outcome=lambda outcome: self._log.add(outcome, self._row),
        )
        group = transport.group_id  # inputs and labels: one group, as in the Faust worker
        self._inputs = self.bus.consumer(group, [self.topics.inputs])
        self._labels = self.bus.consumer(group, [self.topics.labels])
        self._summaries = self.bus.consumer(group, [self.topics.detector_summaries])
        self._drift = self.bus.consumer("driftline-retrainer", [self.topics.drift])
        self._versions = self.bus.consumer("driftline-monitor-models", [self.topics.model_versions])
        self._row = 0
        self._log = _Log(policy, self.pipeline)
        self._alarms: list[tuple[DriftEvent, int]] = []

    def replay(self, stream: LabelledStream, progress: Progress | None = None) -> RunResult:
        """Send ``stream`` through the pipeline, micro-batch by micro-batch; return the record."""
        return asyncio.run(self._replay(stream, progress))

    async def _replay(self, stream: LabelledStream, progress: Progress | None) -> RunResult:
        # One event loop for the whole replay: the loops' transport calls are coroutines, and
        # on the bus they never wait, so a replay stays synchronous and deterministic.
        log = self._log = _Log(self.policy, self.pipeline)
        started = time.perf_counter()
        labelled = 0
        for lo in range(0, len(stream), self.batch_size):
            hi = min(lo + self.batch_size, len(stream))
            self._send_rows(stream, lo, hi)
            due = max(labelled, hi - stream.label_delay)
            self._send_labels(stream, labelled, due)
            labelled = due
            await self._step(stream, hi, log)
            if progress is not None:
                progress(hi, log.result(hi, time.perf_counter() - started))
        self._send_labels(stream, labelled, len(stream))
        await self._step(stream, len(stream), log)
        await self.monitor_loop.checkpoint()
        self.retrainer.close()
        return log.result(len(stream), time.perf_counter() - started)

    async def _step(self, stream: LabelledStream, row: int, log: _Log) -> None:
        """Drain every topic once: labels, inputs, drift alarms, clock, model versions."""
        self._row = row
        for batch in _by_partition(self._labels.poll()):
            await self.monitor_loop.labels(batch)
        outs = [await self.monitor_loop.inputs(b) for b in _by_partition(self._inputs.poll())]
        # Pooled detection: the summaries the inputs produced, merged by the pipeline chart.
        pooled = [
            await self.monitor_loop.summaries(b) for b in _by_partition(self._summaries.poll())
        ]
        log.dead_letters += sum(len(o.dead_letters) for o in outs + pooled)
        if outs or pooled:
            out = max(outs + pooled, key=_closeness)
            log.points.append(
                MonitorPoint(row=row, statistic=out.statistic, threshold=out.threshold)
            )
        for message in self._drift.poll():
            event = DriftEvent.from_json(message.value)
            self._verifier.verify(event)  # signed by this runner's monitor
            alarm_row = stream.row_at(event.window_end)
            log.alarms.append(_alarm(event, alarm_row))
            self._alarms.append((event, alarm_row))
        self._drift.commit()
        self._hand_over_alarms()
        self.retrainer_loop.tick(stream.time(max(row - 1, 0)))
        for message in self._versions.poll():
            version = ModelVersionEvent.from_json(message.value)
            self._verifier.verify(version)  # only this runner publishes here
            self.monitor.on_model_version(version)
            self._alarms = []  # alarms against the old reference are answered
            log.deployments.append(_deployment(version, row))
        self._versions.commit()

    def _hand_over_alarms(self) -> None:
        """Give the retrainer each alarm at once, as the Kafka retrainer service does.

        The retrainer itself waits for labelled rows after the change point (a SKIPPED
        attempt, retried as labels come in on `Retrainer.tick`), and may redeploy a past
        model before any label (label-free reuse of a recurring concept).
        """
        ready, self._alarms = self._alarms, []
        for event, _ in ready:
            self.retrainer_loop.event(event)

    def _send_rows(self, stream: LabelledStream, lo: int, hi: int) -> None:
        stamps = [stream.time(i) for i in range(lo, hi)]
        ids = stream.event_ids[lo:hi]
        if self.encoding == "arrow":
            batch = InferenceBatch.from_arrays(
                self.pipeline, ids, stamps, stream.X[lo:hi], stream.feature_names
            )
            self.bus.produce(
                self.topics.inputs, batch.to_ipc(), headers=_ARROW, timestamp=stamps[-1]
            )
            return
        for i, (event_id, stamp) in enumerate(zip(ids, stamps, strict=True)):
            features = dict(zip(stream.feature_names, stream.X[lo + i].tolist(), strict=True))
            # Built unvalidated, as any producer may send it: the monitor decides what is valid.
            event = InferenceEvent.model_construct(
                event_id=event_id, timestamp=stamp, pipeline=self.pipeline, features=features
            )
            self.bus.produce(
                self.topics.inputs,
                event.to_json(),
                key=event_id.encode(),
                headers=_JSON,
                timestamp=stamp,
            )

    def _send_labels(self, stream: LabelledStream, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            label = stream.y[i]
            if label is None or (isinstance(label, float) and np.isnan(label)):
                continue
            value = label.item() if isinstance(label, np.generic) else label
            event = LabelEvent(
                event_id=stream.event_ids[i],
                label=value,
                timestamp=stream.time(min(i + stream.label_delay, len(stream) - 1)),
                pipeline=self.pipeline,
            )
            self.bus.produce(
                self.topics.labels, event.to_json(), key=event.event_id.encode(), headers=_JSON
            )


class _Log:
    """What a replay has done so far."""

    def __init__(self, policy: str, pipeline: str) -> None:
        self.policy = policy
        self.pipeline = pipeline
        self.points: list[MonitorPoint] = []
        self.alarms: list[AlarmRecord] = []
        self.trainings: list[TrainingRecord] = []
        self.deployments: list[DeploymentRecord] = []
        self.dead_letters = 0
        self.label_requests = 0

    def add(self, outcome: TrainingOutcome, row: int) -> None:
        if outcome.training_id is None or outcome.status in ("DUPLICATE", "IGNORED"):
            return
        self.label_requests += outcome.label_request is not None
        parent = outcome.parent
        fit = outcome.metrics.get("fit", {}) if outcome.metrics else {}
        self.trainings.append(
            TrainingRecord(
                row=row,
                training_id=outcome.training_id,
                trigger=str(outcome.trigger.get("kind", "")),
                status=outcome.status,
                reason=outcome.reason,
                model_version_id=outcome.model_version_id,
                data_version_id=outcome.data_version_id,
                warm_start_from=None if parent is None else parent.model_version_id,
                warm_start_reason="" if parent is None else parent.reason,
                deployed=outcome.deployed,
                seconds=float(outcome.timings.get("total_s", 0.0)),
                rows=int(outcome.metrics.get("selection", {}).get("labelled", 0))
                if outcome.metrics
                else 0,
                metrics={"fit_epochs": fit.get("epochs"), "gate": outcome.metrics.get("gate")}
                if outcome.metrics
                else {},
            )
        )

    def result(self, rows: int, seconds: float) -> RunResult:
        return RunResult(
            policy=self.policy,
            pipeline=self.pipeline,
            rows=rows,
            seconds=seconds,
            points=list(self.points),
            alarms=list(self.alarms),
            trainings=list(self.trainings),
            deployments=list(self.deployments),
            dead_letters=self.dead_letters,
            label_requests=self.label_requests,
        )


def _alarm(event: DriftEvent, row: int) -> AlarmRecord:
    return AlarmRecord(
        row=row,
        drift_id=event.drift_id,
        statistic=event.statistic,
        threshold=event.threshold,
        episode=event.episode_key,
        features=[f.name for f in event.features[:5]],
    )


def _deployment(event: ModelVersionEvent, row: int) -> DeploymentRecord:
    return DeploymentRecord(
        row=row,
        deployment_id=event.deployment_id,
        model_version_id=event.model_version_id,
        data_version_id=event.data_version_id,
        parent_model_version_id=event.parent_model_version_id,
        reason=event.reason,
        metrics=dict(event.metrics),
    )


def _by_partition(messages: Sequence[RawMessage]) -> list[list[RawMessage]]:
    """A poll's messages as one batch per topic partition, each in offset order."""
    batches: dict[tuple[str, int], list[RawMessage]] = {}
    for m in messages:
        batches.setdefault((m.topic, m.partition), []).append(m)
    return list(batches.values())


def _closeness(out: MonitorOutput) -> float:
    """How close a batch's detector is to its threshold (the point a report plots)."""
    if out.statistic is None or not out.threshold:
        return float("-inf")
    return out.statistic / out.threshold


def _to_datetime(stamp: np.datetime64) -> datetime:
    micros = int(stamp.astype("datetime64[us]").astype(np.int64))
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
