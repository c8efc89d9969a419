"""Prometheus metrics of the monitor and the retrainer, served over HTTP.

The worker serves `MonitorMetrics` on ``Settings.metrics_port``; the retrainer service serves
`RetrainerMetrics` on ``Settings.retrainer_metrics_port`` (by default the next port). A
consumer service's `ModelSubscriber` keeps its metrics in the service's own registry
(`driftline.streams.sdk.metrics`).

The monitor's:

    driftline_events_total{pipeline}                 valid input rows
    driftline_batches_total{pipeline}                micro-batches processed
    driftline_dead_letters_total{pipeline,reason}    rejected messages, by reason code
    driftline_empty_messages_total{pipeline}         valid messages with no rows (zero-row
                                                     Arrow batches: counted, not dead-lettered)
    driftline_drift_events_total{pipeline}           DriftEvents published
    driftline_alarms_suppressed_total{pipeline}      alarms held back within an episode
    driftline_ood_flags_total{pipeline}              OODFlags published
    driftline_labels_total{pipeline}                 labels archived
    driftline_model_versions_refused_total{pipeline,reason}
                                                     model-version events not trusted
                                                     (unsigned, unknown_key, bad_signature, ...)
    driftline_detector_statistic{pipeline}           latest drift statistic
    driftline_detector_threshold{pipeline}           its alarm threshold
    driftline_consumer_lag{pipeline,partition}       messages behind the end of {p}.inputs
    driftline_batch_seconds{pipeline}                processing time per micro-batch
    driftline_checkpoint_seconds{pipeline}           time to save state and ack

The retrainer's:

    driftline_trainings_total{pipeline,outcome,trigger}  finished retrainer calls: outcome is
                                                     COMPLETE/FAILED/SKIPPED/DUPLICATE/IGNORED,
                                                     trigger drift/bootstrap/time/data_amount/...
    driftline_gate_decisions_total{pipeline,decision}  challenger vs champion: deploy or keep
    driftline_deployments_total{pipeline}            models deployed (and published)
    driftline_label_requests_total{pipeline}         trainings skipped asking for labels
    driftline_alarms_waiting_for_labels{pipeline}    drift alarms held until labels come back
    driftline_training_seconds{pipeline}             wall time of a training (COMPLETE/FAILED)
    driftline_retrainer_errors_total{pipeline}       store/broker failures (the record is retried)
    driftline_drift_events_refused_total{pipeline,reason}  drift events not acted on: reason
                                                     unsigned, unknown_key, bad_signature,
                                                     no_keys (refused) or stale

>>> m = MonitorMetrics("fraud")
>>> m.dead_letters.labels(pipeline="fraud", reason="malformed").inc()
>>> b"driftline_dead_letters_total" in m.exposition()
True
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from driftline.errors import ConfigError
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import LabelOutput, MonitorOutput

if TYPE_CHECKING:
    from driftline.retrainer.outcome import TrainingOutcome

__all__ = ["MonitorMetrics", "RetrainerMetrics", "serve_registry"]


def serve_registry(
    registry: CollectorRegistry, port: int, setting: str, addr: str = "0.0.0.0"
) -> None:
    """Serve ``/metrics`` of ``registry`` on ``port`` from a background thread.

    A port already taken is a :class:`ConfigError` naming ``setting``, the option to change.
    """
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"metrics port {port} is already in use (another driftline process on this host?): "
            f"set {setting} to a free port, or 0 to turn metrics off"
        ) from None


class MonitorMetrics:
    """The monitor's metrics in a registry of their own (several pipelines, one process)."""

    def __init__(self, pipeline: str, registry: CollectorRegistry | None = None) -> None:
        self.pipeline = pipeline
        self.registry = registry or CollectorRegistry()
        r, p = self.registry, ["pipeline"]
        self.events = Counter("driftline_events", "Valid input rows", p, registry=r)
        self.batches = Counter("driftline_batches", "Micro-batches processed", p, registry=r)
        self.dead_letters = Counter(
            "driftline_dead_letters", "Rejected input messages", [*p, "reason"], registry=r
        )
        self.empty_messages = Counter(
            "driftline_empty_messages", "Valid input messages with no rows", p, registry=r
        )
        self.drift_events = Counter("driftline_drift_events", "DriftEvents", p, registry=r)
        self.suppressed = Counter(
            "driftline_alarms_suppressed", "Alarms held back within an episode", p, registry=r
        )
        self.ood_flags = Counter("driftline_ood_flags", "OODFlags published", p, registry=r)
        self.labels = Counter("driftline_labels", "Labels archived", p, registry=r)
        self.refused_versions = Counter(
            "driftline_model_versions_refused",
            "Model-version events refused",
            [*p, "reason"],
            registry=r,
        )
        self.statistic = Gauge("driftline_detector_statistic", "Drift statistic", p, registry=r)
        self.threshold = Gauge("driftline_detector_threshold", "Alarm threshold", p, registry=r)
        self.lag = Gauge(
            "driftline_consumer_lag",
            "Messages behind the end of the input",
            [*p, "partition"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "driftline_batch_seconds", "Processing time per micro-batch", p, registry=r
        ).labels(pipeline=pipeline)
        self.checkpoint_seconds = Histogram(
            "driftline_checkpoint_seconds", "Time to save state and ack", p, registry=r
        ).labels(pipeline=pipeline)

    def observe_batch(
        self, out: MonitorOutput, messages: Sequence[RawMessage], seconds: float
    ) -> None:
        """Count one processed micro-batch."""
        p = self.pipeline
        self.batches.labels(pipeline=p).inc()
        self.events.labels(pipeline=p).inc(out.rows)
        self.empty_messages.labels(pipeline=p).inc(out.empty_messages)
        for letter in out.dead_letters:
            self.dead_letters.labels(pipeline=p, reason=letter.reason.value).inc()
        self.drift_events.labels(pipeline=p).inc(len(out.drift_events))
        self.suppressed.labels(pipeline=p).inc(out.suppressed_alarms)
        self.ood_flags.labels(pipeline=p).inc(len(out.ood_flags))
        if out.statistic is not None:
            self.statistic.labels(pipeline=p).set(out.statistic)
        if out.threshold is not None:
            self.threshold.labels(pipeline=p).set(out.threshold)
        self.batch_seconds.observe(seconds)

    def observe_summaries(self, out: MonitorOutput) -> None:
        """Count a merged batch of detector summaries (the pipeline chart's owner)."""
        p = self.pipeline
        for letter in out.dead_letters:
            self.dead_letters.labels(pipeline=p, reason=letter.reason.value).inc()
        self.drift_events.labels(pipeline=p).inc(len(out.drift_events))
        self.suppressed.labels(pipeline=p).inc(out.suppressed_alarms)
        if out.statistic is not None:
            self.statistic.labels(pipeline=p).set(out.statistic)
        if out.threshold is not None:
            self.threshold.labels(pipeline=p).set(out.threshold)

    def observe_refused_model_version(self, reason: str) -> None:
        """Count a model-version event that was not trusted, by reason code."""
        self.refused_versions.labels(pipeline=self.pipeline, reason=reason).inc()

    def observe_labels(self, out: LabelOutput) -> None:
        """Count archived and rejected labels."""
        self.labels.labels(pipeline=self.pipeline).inc(out.labels)
        for letter in out.dead_letters:
            self.dead_letters.labels(pipeline=self.pipeline, reason=letter.reason.value).inc()

    def observe_lag(
        self, highwater: Callable[[str, int], int | None], messages: Sequence[RawMessage]
    ) -> None:
        """Lag per partition: the partition's end offset (``highwater(topic, partition)``,
        None when unknown) minus the next offset to read."""
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic, m.partition)] = m.offset
        for (topic, partition), offset in last.items():
            high = highwater(topic, partition)
            if high is not None:
                self.lag.labels(pipeline=self.pipeline, partition=str(partition)).set(
                    max(0, high - offset - 1)
                )

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``port`` from a background thread."""
        serve_registry(self.registry, port, "DRIFTLINE_METRICS_PORT (metrics_port)", addr)


class RetrainerMetrics:
    """The retrainer service's metrics in a registry of their own.

    >>> from driftline.retrainer.outcome import TrainingOutcome
    >>> m = RetrainerMetrics("fraud")
    >>> m.observe_outcome(TrainingOutcome("SKIPPED", "too few labels", trigger={"kind": "drift"}))
    >>> b'outcome="SKIPPED",pipeline="fraud",trigger="drift"' in m.exposition()
    True
    """

    def __init__(self, pipeline: str, registry: CollectorRegistry | None = None) -> None:
        self.pipeline = pipeline
        self.registry = registry or CollectorRegistry()
        r, p = self.registry, ["pipeline"]
        self.trainings = Counter(
            "driftline_trainings",
            "Finished retrainer calls by outcome and trigger",
            [*p, "outcome", "trigger"],
            registry=r,
        )
        self.gate_decisions = Counter(
            "driftline_gate_decisions",
            "Gate decisions: deploy the challenger or keep the champion",
            [*p, "decision"],
            registry=r,
        )
        self.deployments = Counter(
            "driftline_deployments", "Models deployed by the retrainer", p, registry=r
        )
        self.label_requests = Counter(
            "driftline_label_requests", "Trainings skipped asking for labels", p, registry=r
        )
        self.waiting = Gauge(
            "driftline_alarms_waiting_for_labels",
            "Drift alarms held until enough labels came back",
            p,
            registry=r,
        )
        self.training_seconds = Histogram(
            "driftline_training_seconds",
            "Wall time of a training",
            p,
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        ).labels(pipeline=pipeline)
        self.refused = Counter(
            "driftline_drift_events_refused",
            "Drift events not acted on, by reason (unsigned, unknown_key, bad_signature, stale)",
            [*p, "reason"],
            registry=r,
        )
        self.errors = Counter(
            "driftline_retrainer_errors",
            "Store or broker failures of the retrainer (the record is handled again)",
            p,
            registry=r,
        )
        # Every unlabelled series exists from the start, at zero: alerts see a flat line.
        for counter in (self.deployments, self.label_requests, self.errors):
            counter.labels(pipeline=pipeline)
        for decision in ("deploy", "keep_champion"):
            self.gate_decisions.labels(pipeline=pipeline, decision=decision)
        self.waiting.labels(pipeline=pipeline).set(0)

    def observe_outcome(self, outcome: TrainingOutcome) -> None:
        """Count one finished retrainer call."""
        p = self.pipeline
        trigger = str(outcome.trigger.get("kind", "none"))
        self.trainings.labels(pipeline=p, outcome=outcome.status, trigger=trigger).inc()
        gate = outcome.metrics.get("gate") if outcome.metrics else None
        if isinstance(gate, dict):
            decision = "deploy" if gate.get("deploy") else "keep_champion"
            self.gate_decisions.labels(pipeline=p, decision=decision).inc()
        if outcome.deployed:
            self.deployments.labels(pipeline=p).inc()
        if outcome.label_request is not None:
            self.label_requests.labels(pipeline=p).inc()
        total = outcome.timings.get("total_s")
        if total is not None and outcome.status in ("COMPLETE", "FAILED"):
            self.training_seconds.observe(total)

    def observe_refused(self, reason: str) -> None:
        """One drift event refused (signature) or ignored as stale."""
        self.refused.labels(pipeline=self.pipeline, reason=reason).inc()

    def observe_waiting(self, alarms: int) -> None:
        """How many drift alarms wait for labels now."""
        self.waiting.labels(pipeline=self.pipeline).set(alarms)

    def observe_errors(self, count: int) -> None:
        """``count`` more store/broker failures."""
        if count > 0:
            self.errors.labels(pipeline=self.pipeline).inc(count)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``port`` from a background thread."""
        serve_registry(
            self.registry, port, "DRIFTLINE_RETRAINER_METRICS_PORT (retrainer_metrics_port)", addr
        )
