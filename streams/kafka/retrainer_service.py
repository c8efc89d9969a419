"""The retrainer service: ``{p}.drift`` in, deployed model versions out on ``{p}.model-versions``.

It is a Kafka consumer group member that hands each DriftEvent to the
:class:`driftline.retrainer.service.Retrainer` library and publishes what the library recorded:

* **At-least-once in, exactly one training out.** The drift offset is committed only after
  the retrainer finished with the event; a crash re-delivers it. The store's
  ``begin_training`` is idempotent per drift episode (a database unique index), so a
  re-delivered event, a second alarm of the same episode or a second service instance in
  the same group never start a second training of an episode.
* **Publishing through the outbox** (see :mod:`driftline.streams.kafka.publisher` for why not a
Kafka
  transaction): the store records each deployment together with its ModelVersionEvent; the
  service publishes pending events on start-up and after every event it handled, and marks
  them published once the broker confirmed.
* **Training off the poll loop.** Training runs on a worker thread while the loop keeps
  polling with its partitions paused, so a long training never exceeds
  ``max.poll.interval.ms`` and never costs the instance its group membership.
* **Time and data-amount triggers** run from ``Retrainer.tick`` every ``tick_interval_s``.
* **Labels that come back let the episode train.** An alarm SKIPPED for too few labels (the
  retrainer publishes a LabelRequest for it) is kept; on each tick, once at least
  ``selection.min_labelled_rows`` more labels were archived, it is handed to the retrainer
  again — until it trains, or a deployment ends its episode. (Kept in memory: after a
  restart the monitor's next alarm of the episode does the same.)
* **Interrupted trainings.** A training left RUNNING or NEW by a killed instance holds its
  episode. On start-up and on every tick the service marks trainings FAILED ("interrupted")
  once they are older than ``stale_after_s`` (longer than any training may run, so never a
  live one), and the re-delivered drift event — or, if that came too early, the episode's
  next alarm — trains the episode once. Nothing was published for them: a deployment and
  its event are only ever written together, after training.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from driftline.retrainer.publisher import Publisher, flush_outbox
from driftline.schemas import DeadLetter, DeadLetterReason, DriftEvent, SchemaError

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

    from driftline.config.settings import Settings
    from driftline.lifecycle_store.store import LifecycleStore
    from driftline.retrainer.outcome import TrainingOutcome
    from driftline.retrainer.service import Retrainer

__all__ = ["RetrainerService", "ServiceStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ServiceStats:
    """What the service did since it started.

    ``outcomes`` counts trainings by status (and ``DUPLICATE``/``IGNORED``); ``deployed``
    the new champions; ``republished`` the outbox events the service itself had to send
    because they were still pending (a crash, or an unreachable broker at deploy time).
    """

    drift_events: int = 0
    invalid_events: int = 0
    ticks: int = 0
    deployed: int = 0
    republished: int = 0
    interrupted_trainings: int = 0
    errors: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.outcomes[status] = self.outcomes.get(status, 0) + 1


@dataclass(frozen=True)
class _WaitingForLabels:
    event: DriftEvent
    champion_id: str | None
    labels_at_skip: int


class RetrainerService:
    """Run the retrainer of ``settings.pipeline`` as a member of consumer group ``group_id``.

    ``store``, ``publisher`` and ``retrainer`` default to the ones ``settings`` describes
    (the lifecycle store at ``store_url``, a
    :class:`driftline.streams.kafka.publisher.KafkaPublisher`).
    :meth:`run` blocks until :meth:`stop` is called (e.g. from a signal handler).

    >>> from driftline.config.settings import Settings
    >>> service = RetrainerService(Settings(pipeline="fraud"), store=object(),
    ...                            publisher=object(), retrainer=object())
    >>> service.group_id, service.topic
    ('driftline-retrainer-fraud', 'fraud.drift')
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: LifecycleStore | None = None,
        publisher: Publisher | None = None,
        retrainer: Retrainer | None = None,
        group_id: str | None = None,
        tick_interval_s: float = 5.0,
        poll_timeout_s: float = 0.5,
        stale_after_s: float | None = None,
    ) -> None:
        if tick_interval_s <= 0 or poll_timeout_s <= 0:
            raise ValueError(
                f"tick_interval_s and poll_timeout_s must be > 0, got {tick_interval_s} "
                f"and {poll_timeout_s}"
            )
        self.settings = settings
        self.pipeline = settings.pipeline
        self.topic = settings.topics.drift
        self.group_id = group_id or f"driftline-retrainer-{settings.pipeline}"
        self.tick_interval_s = tick_interval_s
        self.poll_timeout_s = poll_timeout_s
        # A training may run model.timeout_s; twice that (and at least 10 min) cannot be live.
        self.stale_after_s = (
            stale_after_s
            if stale_after_s is not None
            else max(600.0, 2 * settings.config.model.timeout_s)
        )
        self._store = store
        self._publisher = publisher
        self._retrainer = retrainer
        self._stop = threading.Event()
        self._busy = False
        self._partitions: set[int] = set()
        self._waiting: dict[str, _WaitingForLabels] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="retrainer-training")
        self.stats = ServiceStats()

    # -- wiring ----------------------------------------------------------------------------

    @property
    def store(self) -> LifecycleStore:
        if self._store is None:
            from driftline.lifecycle_store.store import LifecycleStore

            self._store = LifecycleStore.open(
                self.settings.store_url.get_secret_value(), self.settings.artifacts
            )
        return self._store

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            from driftline.streams.kafka.publisher import KafkaPublisher

            self._publisher = KafkaPublisher(self.settings)
        return self._publisher

    @property
    def retrainer(self) -> Retrainer:
        if self._retrainer is None:
            from driftline.retrainer.service import Retrainer

            self._retrainer = Retrainer(self.store, self.settings.config, self.publisher)
        return self._retrainer

    # -- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the event in hand (safe from a signal handler)."""
        self._stop.set()

    def start_up(self) -> None:
        """Create missing topics, release interrupted trainings, publish the pending outbox."""
        from driftline.streams.kafka.clients import ensure_topics

        ensure_topics(self.settings)
        self.stats.interrupted_trainings += self.release_interrupted()
        self._flush()

    def run(self, *, max_events: int | None = None) -> ServiceStats:
        """Consume drift events until :meth:`stop` (or ``max_events`` handled)."""
        from driftline.streams.kafka.clients import make_consumer

        self.start_up()
        consumer = make_consumer(
            self.settings,
            self.group_id,
            # Cooperative rebalancing: another instance joining does not stop this one.
            partition_assignment_strategy="cooperative-sticky",
            # One event at a time is plenty: a training takes seconds, decoding micro-seconds.
            max_poll_interval_ms=max(300_000, int(self.stale_after_s * 1000)),
        )
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        handled = 0
        next_tick = time.monotonic() + self.tick_interval_s
        log.info("retrainer for %s consuming %s as %s", self.pipeline, self.topic, self.group_id)
        try:
            while not self._stop.is_set():
                message = consumer.poll(self.poll_timeout_s)
                if message is not None:
                    if message.error() is not None:
                        log.warning("consumer error on %s: %s", self.topic, message.error())
                    else:
                        self._handle_message(consumer, message)
                        handled += 1
                        if max_events is not None and handled >= max_events:
                            break
                if time.monotonic() >= next_tick:
                    self._tick(consumer)
                    next_tick = time.monotonic() + self.tick_interval_s
        finally:
            consumer.close()
        return self.stats

    def close(self) -> None:
        """Release the worker thread, the producer and the store connection."""
        self._executor.shutdown(wait=True)
        if self._retrainer is not None:
            self._retrainer.close()
        close = getattr(self._publisher, "close", None)
        if close is not None:
            close()
        if self._store is not None:
            self._store.close()

    # -- one drift event -------------------------------------------------------------------

    def _handle_message(self, consumer: Consumer, message: Message) -> None:
        value = message.value() or b""
        try:
            event = DriftEvent.from_json(value)
        except SchemaError as exc:
            self._reject(consumer, message, DeadLetterReason.SCHEMA_VIOLATION, str(exc))
            return
        if event.pipeline != self.pipeline:
            detail = f"drift event of pipeline {event.pipeline!r} on {self.topic}"
            self._reject(consumer, message, DeadLetterReason.WRONG_PIPELINE, detail)
            return
        self.stats.drift_events += 1
        try:
            outcome = self._off_loop(consumer, self.retrainer.handle_drift, event)
        except Exception:
            # The store or the broker failed, not the training (the retrainer records those):
            # leave the offset uncommitted and read the event again after a pause.
            self.stats.errors += 1
            log.exception("drift event %s not handled; retrying", event.drift_id)
            self._retry_later(consumer, message)
            return
        self._record(outcome)
        self._wait_for_labels(event, outcome)
        self._flush()
        self._commit(consumer, message)

    def _reject(
        self, consumer: Consumer, message: Message, reason: DeadLetterReason, detail: str
    ) -> None:
        try:
            self._dead_letter(message, reason, detail)
        except Exception:
            # Not dead-lettered, so not committed either: nothing is lost.
            self.stats.errors += 1
            log.exception("dead-lettering the drift record at offset %s failed", message.offset())
            self._retry_later(consumer, message)
            return
        self.stats.invalid_events += 1
        self._commit(consumer, message)

    def _commit(self, consumer: Consumer, message: Message) -> None:
        from confluent_kafka import KafkaException

        try:
            consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            # A rebalance moved the partition meanwhile: its new owner gets the event again
            # and finds the episode already trained (a DUPLICATE, no second training).
            log.info("offset %s not committed (%s); it will be re-delivered", message.offset(), exc)

    def _tick(self, consumer: Consumer) -> None:
        self.stats.ticks += 1
        try:
            # Also here, not only at start-up: a training orphaned by a crashed instance frees
            # its episode once stale, and the episode's next alarm can then train it.
            self.stats.interrupted_trainings += self.release_interrupted()
            self._retry_waiting(consumer)
            outcomes = self._off_loop(consumer, self.retrainer.tick, datetime.now(UTC))
        except Exception:
            self.stats.errors += 1
            log.exception("time/amount trigger check failed; trying again next tick")
            return
        for outcome in outcomes:
            self._record(outcome)
        self._flush()

    def _wait_for_labels(self, event: DriftEvent, outcome: TrainingOutcome) -> None:
        """Remember an alarm skipped for want of labels, to train it when they arrive."""
        if outcome.status == "SKIPPED" and (
            outcome.label_request is not None or "labelled" in outcome.reason
        ):
            champion = self.store.current(self.pipeline)
            self._waiting[event.episode_key] = _WaitingForLabels(
                event, None if champion is None else champion.id, self._labels_total()
            )
        else:
            self._waiting.pop(event.episode_key, None)

    def _retry_waiting(self, consumer: Consumer) -> None:
        """Hand a skipped alarm to the retrainer again once enough new labels arrived.

        The monitor re-emits an alarm of a lasting drift only every ``ert`` rows; without
        this, labels that come back soon after a skip would wait for that next alarm.
        """
        if not self._waiting:
            return
        champion = self.store.current(self.pipeline)
        labels = self._labels_total()
        needed = self.settings.config.selection.min_labelled_rows
        for key, waiting in list(self._waiting.items()):
            if (None if champion is None else champion.id) != waiting.champion_id:
                del self._waiting[key]  # a deployment started a new episode: this one is over
                continue
            if labels - waiting.labels_at_skip < needed:
                continue
            outcome = self._off_loop(consumer, self.retrainer.handle_drift, waiting.event)
            self._record(outcome)
            self._wait_for_labels(waiting.event, outcome)

    def _labels_total(self) -> int:
        from driftline.lifecycle_store.exceptions import NotFoundError

        try:
            return sum(s.row_count for s in self.store.archive(self.pipeline).segments("labels"))
        except NotFoundError:
            return 0

    def _record(self, outcome: TrainingOutcome) -> None:
        self.stats.count(outcome.status)
        self.stats.deployed += int(outcome.deployed)
        log.info("training %s: %s %s", outcome.training_id, outcome.status, outcome.reason)

    def _off_loop(self, consumer: Consumer, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the worker thread; keep polling (paused) so the group keeps us."""
        future: Future[T] = self._executor.submit(fn, *args)
        self._busy = True
        paused = consumer.assignment()
        if paused:
            consumer.pause(paused)
        try:
            while not future.done():
                held = consumer.poll(self.poll_timeout_s)
                if held is not None and held.error() is None:
                    # Fetched before the pause took effect: read it again after resuming.
                    self._rewind(consumer, held)
            return future.result()
        finally:
            self._busy = False
            assignment = consumer.assignment()
            if assignment:
                consumer.resume(assignment)

    @property
    def assigned(self) -> bool:
        """Whether this instance currently owns any partition of ``{p}.drift``."""
        return bool(self._partitions)

    def _on_assign(self, consumer: Consumer, partitions: list[Any]) -> None:
        self._partitions.update(tp.partition for tp in partitions)
        if self._busy and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        self._partitions.difference_update(tp.partition for tp in partitions)

    def _rewind(self, consumer: Consumer, message: Message) -> None:
        from confluent_kafka import TopicPartition

        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        consumer.seek(TopicPartition(topic, partition, offset))

    def _retry_later(self, consumer: Consumer, message: Message) -> None:
        self._rewind(consumer, message)
        self._stop.wait(min(30.0, 2.0 ** min(self.stats.errors, 5)))

    # -- outbox, dead letters, interrupted trainings ----------------------------------------

    def _flush(self) -> None:
        try:
            self.stats.republished += flush_outbox(self.store, self.publisher)
        except Exception:
            # Still pending in the store: the next flush (or start-up) sends it.
            self.stats.errors += 1
            log.exception("publishing the outbox failed; pending events stay queued")

    def _dead_letter(self, message: Message, reason: DeadLetterReason, detail: str) -> None:
        log.warning("drift record at offset %s rejected: %s", message.offset(), detail)
        letter = DeadLetter(
            pipeline=self.pipeline,
            reason=reason,
            detail=detail[:2000],
            source_topic=message.topic() or self.topic,
            source_partition=message.partition(),
            source_offset=message.offset(),
            headers=_headers(message),
            key=message.key(),
            payload=message.value() or b"",
        )
        publish = getattr(self.publisher, "publish", None)
        if publish is None:
            log.error("publisher %r cannot send dead letters; dropping %s", self.publisher, letter)
            return
        publish(self.settings.topics.dlq, None, letter.to_json())

    def release_interrupted(self, now: datetime | None = None) -> int:
        """Mark this pipeline's NEW/RUNNING trainings idle for ``stale_after_s`` as FAILED.

        Returns how many were released. Their episodes can then be trained (once) when the
        drift event that started them is delivered again.
        """
        from driftline.lifecycle_store.exceptions import NotFoundError

        now = now or datetime.now(UTC)
        limit = timedelta(seconds=self.stale_after_s)
        try:
            held = [
                t
                for status in ("NEW", "RUNNING")
                for t in self.store.trainings(self.pipeline, None, status=status)
            ]
        except NotFoundError:
            return 0  # the monitor registers the pipeline with its first rows
        released = 0
        for training in held:
            last = training.started_at or training.created_at
            if last is None or now - last < limit:
                continue
            try:
                self.store.update_training(
                    training.id,
                    status="FAILED",
                    reason=(
                        f"interrupted: {training.status} for over {self.stale_after_s:.0f}s "
                        "with no progress (its process died); the episode may train again"
                    ),
                )
            except Exception as exc:  # finished meanwhile by a live instance: fine
                log.info("training %s not released: %s", training.id, exc)
                continue
            released += 1
            log.warning("released interrupted training %s (%s)", training.id, training.status)
        return released


def _headers(message: Message) -> dict[str, str]:
    raw: Any = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        str(k): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")
        for k, v in pairs
    }
