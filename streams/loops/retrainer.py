"""The retrainer loop: drift / label / clock → `Retrainer` → outbox → commit.

Written once for every transport: the retrainer service (`driftline.streams.kafka.
retrainer_service`, a librdkafka consumer of ``{p}.drift``) and the embedded runner
(`driftline.streams.embedded.runner`, the in-process bus) are shells that hand it drift
records and clock ticks, and commit a record's offset when `RetrainerLoop.drift` returns.

* **At-least-once in, exactly one training out.** The shell commits a drift record only after
  `RetrainerLoop.drift` returned; if it raises (the store or the broker failed, not the
  training, which the retrainer records) nothing is committed and the record comes again.
  The store's ``begin_training`` is idempotent per drift episode, so a re-delivered event
  never starts a second training.
* **A bad record is a dead letter**, produced before its offset is committed: nothing lost.
* **Only signed, current alarms count** (`driftline.retrainer.admission`): an event whose
  signature does not verify is *refused* before anything is recorded, one that names a
  reference no longer in force is *ignored as stale*; either way its reason code is logged,
  counted in ``LoopStats.refused`` and handed to ``on_refused`` (the service's
  ``driftline_drift_events_refused_total{reason}``).
* **Publishing through the outbox.** The store records each deployment together with its
  ModelVersionEvent; the loop flushes pending events after every record and tick (and the
  shell at start-up) and the store marks them published once the broker confirmed.
* **Labels that come back let the episode train.** An alarm SKIPPED for want of labels is
  retried by `Retrainer.tick` (the one place that owns the retry rules of a drift episode,
  for both runtimes) as labels come in — until it trains or a new champion ends its
  episode. The loop only ticks it and reports ``waiting_for_labels``.

``run`` executes the retrainer's calls: inline for a replay, on a worker thread while the
consumer keeps polling for the Kafka service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from driftline.retrainer.admission import admit
from driftline.retrainer.publisher import Publisher, flush_outbox
from driftline.schemas import DeadLetter, DeadLetterReason, DriftEvent, EventVerifier, SchemaError
from driftline.streams.monitor.codec import dead_letter
from driftline.streams.monitor.messages import RawMessage

if TYPE_CHECKING:
    from driftline.lifecycle_store.store import LifecycleStore
    from driftline.retrainer.outcome import TrainingOutcome
    from driftline.retrainer.service import Retrainer

__all__ = ["LoopStats", "RetrainerLoop", "Runner"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Runner = Callable[..., Any]
"""``run(fn, *args)`` returns ``fn(*args)``, wherever it chooses to call it."""


def _inline(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


@dataclass
class LoopStats:
    """What the loop did: drift events, invalid records, deployments, republished outbox rows.

    ``outcomes`` counts trainings by status (and ``DUPLICATE``/``IGNORED``/``REUSED``);
    ``refused`` counts drift events not acted on, by reason (``unsigned``, ``bad_signature``,
    ``stale``, ...); ``conflicting_duplicates`` is how many events the latest training
    selection left out because they were archived in conflicting copies (one id, other
    features or time).
    """

    drift_events: int = 0
    invalid_events: int = 0
    ticks: int = 0
    deployed: int = 0
    republished: int = 0
    errors: int = 0
    conflicting_duplicates: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.outcomes[status] = self.outcomes.get(status, 0) + 1


class RetrainerLoop:
    """Hand drift records and ticks of pipeline ``pipeline`` to ``retrainer``.

    ``send_dead_letter`` produces a dead letter durably
    (raising if it cannot); ``on_outcome`` sees every outcome; ``verifier`` holds the monitor
    keys drift events must be signed with; ``on_refused`` sees the reason code of every drift
    event refused or ignored as stale.
    """

    def __init__(
        self,
        retrainer: Retrainer,
        store: LifecycleStore,
        publisher: Publisher,
        pipeline: str,
        *,
        send_dead_letter: Callable[[DeadLetter], object],
        verifier: EventVerifier,
        on_outcome: Callable[[TrainingOutcome], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        run: Runner = _inline,
        stats: LoopStats | None = None,
    ) -> None:
        self.retrainer = retrainer
        self.store = store
        self.publisher = publisher
        self.pipeline = pipeline
        self.send_dead_letter = send_dead_letter
        self.verifier = verifier
        self.on_outcome = on_outcome
        self.on_refused = on_refused
        self.run = run
        self.stats = LoopStats() if stats is None else stats
        self._waiting = 0

    @property
    def waiting_for_labels(self) -> int:
        """How many drift episodes waited for labels after the last event or tick
        (`Retrainer.waiting_for_labels`)."""
        return self._waiting

    def drift(self, message: RawMessage) -> TrainingOutcome | None:
        """One record of ``{p}.drift``; returns once its offset may be committed.

        A record that is not a DriftEvent of this pipeline becomes a dead letter (None).
        """
        try:
            event = DriftEvent.from_json(message.value)
        except SchemaError as exc:
            self._reject(message, DeadLetterReason.SCHEMA_VIOLATION, str(exc))
            return None
        if event.pipeline != self.pipeline:
            detail = f"drift event of pipeline {event.pipeline!r} on {message.topic}"
            self._reject(message, DeadLetterReason.WRONG_PIPELINE, detail)
            return None
        self.stats.drift_events += 1
        refusal = admit(event, self.verifier, self.store, self.pipeline)
        if refusal is not None:
            self._refuse(message, refusal.reason, refusal.detail)
            return None
        outcome = self.event(event)
        self.flush()
        return outcome

    def event(self, event: DriftEvent) -> TrainingOutcome:
        """Hand one decoded DriftEvent to the retrainer (which keeps its episode if it waits
        for labels, and retries it on `tick`)."""
        outcome: TrainingOutcome = self.run(self.retrainer.handle_drift, event)
        self._record(outcome)
        self._waiting = self.retrainer.waiting_for_labels()
        return outcome

    def tick(self, now: datetime) -> list[TrainingOutcome]:
        """Advance the retrainer's clock (a drift episode whose labels came back trains, the
        time/amount triggers run), then flush."""
        self.stats.ticks += 1
        ticked: list[TrainingOutcome] = self.run(self.retrainer.tick, now)
        for outcome in ticked:
            self._record(outcome)
        self._waiting = self.retrainer.waiting_for_labels()
        self.flush()
        return ticked

    def flush(self) -> int:
        """Publish the store's pending outbox; a failure leaves it pending for the next flush."""
        try:
            sent = flush_outbox(self.store, self.publisher)
        except Exception:
            self.stats.errors += 1
            log.exception("publishing the outbox failed; pending events stay queued")
            return 0
        self.stats.republished += sent
        return sent

    def _reject(self, message: RawMessage, reason: DeadLetterReason, detail: str) -> None:
        log.warning("drift record at offset %s rejected: %s", message.offset, detail)
        self.send_dead_letter(dead_letter(message, self.pipeline, reason, detail))
        self.stats.invalid_events += 1

    def _refuse(self, message: RawMessage, reason: str, detail: str) -> None:
        # %r: the detail quotes ids the event chose, which may hold newlines.
        log.warning(
            "drift record at offset %s not acted on (%s): %r", message.offset, reason, detail
        )
        self.stats.refused[reason] = self.stats.refused.get(reason, 0) + 1
        if self.on_refused is not None:
            self.on_refused(reason)

    def _record(self, outcome: TrainingOutcome) -> None:
        self.stats.count(outcome.status)
        self.stats.deployed += int(outcome.deployed)
        selection = outcome.metrics.get("selection") if outcome.metrics else None
        if isinstance(selection, dict) and "conflicting_duplicates" in selection:
            self.stats.conflicting_duplicates = int(selection["conflicting_duplicates"])
            if self.stats.conflicting_duplicates:
                log.warning(
                    "training %s left out %d events archived twice with different features "
                    "or time under one id",
                    outcome.training_id,
                    self.stats.conflicting_duplicates,
                )
        log.info("training %s: %s %s", outcome.training_id, outcome.status, outcome.reason)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
