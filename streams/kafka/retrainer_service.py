"""The retrainer service: ``{p}.drift`` in, deployed model versions out on ``{p}.model-versions``.

It is a Kafka consumer group member, a thin shell over
:class:`driftline.streams.loops.retrainer.RetrainerLoop`, which decides what each drift record
and each tick does (the guarantees are listed there). The service adds what only Kafka needs:

* **Training off the poll loop.** Training runs on a worker thread while the loop keeps
  polling with its partitions paused, so a long training never exceeds
  ``max.poll.interval.ms`` and never costs the instance its group membership.
* **Time and data-amount triggers** and alarms waiting for labels run from the loop's tick
  every ``tick_interval_s``; labels are counted in the archive.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from driftline.retrainer.publisher import Publisher
from driftline.schemas import DeadLetter
from driftline.streams.kafka.clients import to_raw_message
from driftline.streams.loops.retrainer import LoopStats, RetrainerLoop

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

    from driftline.config.settings import Settings
    from driftline.lifecycle_store.store import LifecycleStore
    from driftline.retrainer.service import Retrainer
    from driftline.streams.metrics import RetrainerMetrics

__all__ = ["RetrainerService", "ServiceStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ServiceStats(LoopStats):
    """What the service did since it started: the loop's counts plus released trainings."""

    interrupted_trainings: int = 0


class RetrainerService:
    """Run the retrainer of ``settings.pipeline`` as a member of consumer group ``group_id``.

    ``store``, ``publisher`` and ``retrainer`` default to the ones ``settings`` describes
    (the lifecycle store at ``store_url``, a
    :class:`driftline.streams.kafka.publisher.KafkaPublisher`).
    :meth:`run` blocks until :meth:`stop` is called (e.g. from a signal handler).
    ``metrics`` (a :class:`driftline.streams.metrics.RetrainerMetrics`) counts what it does;
    the ``driftline retrainer`` command serves them on ``retrainer_metrics_port``.

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
        metrics: RetrainerMetrics | None = None,
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
        self._loop: RetrainerLoop | None = None
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._busy = False
        self._partitions: set[int] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="retrainer-training")
        self.stats = ServiceStats()
        self.metrics = metrics
        self._errors_counted = 0

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

    @property
    def loop(self) -> RetrainerLoop:
        if self._loop is None:
            self._loop = RetrainerLoop(
                self.retrainer,
                self.store,
                self.publisher,
                self.pipeline,
                send_dead_letter=self._send_dead_letter,
                verifier=self.settings.model_version_verifier(),
                run=self._off_loop,
                stats=self.stats,
                on_outcome=None if self.metrics is None else self.metrics.observe_outcome,
                on_refused=None if self.metrics is None else self.metrics.observe_refused,
            )
        return self._loop

    def _observe(self) -> None:
        """Bring the gauges and the error count of ``metrics`` up to date."""
        if self.metrics is None:
            return
        self.metrics.observe_waiting(self.loop.waiting_for_labels)
        self.metrics.observe_errors(self.stats.errors - self._errors_counted)
        self._errors_counted = self.stats.errors

    # -- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the event in hand (safe from a signal handler)."""
        self._stop.set()

    def start_up(self) -> None:
        """Create missing topics, release interrupted trainings, publish the pending outbox."""
        from driftline.streams.kafka.clients import ensure_topics

        ensure_topics(self.settings)
        self.stats.interrupted_trainings += self.release_interrupted()
        self.loop.flush()
        self._observe()

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
        self._consumer = consumer
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
                        self._observe()
                        handled += 1
                        if max_events is not None and handled >= max_events:
                            break
                if time.monotonic() >= next_tick:
                    self._tick()
                    self._observe()
                    next_tick = time.monotonic() + self.tick_interval_s
        finally:
            self._consumer = None
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

    # -- the Kafka side of one drift record and one tick ------------------------------------

    def _handle_message(self, consumer: Consumer, message: Message) -> None:
        try:
            self.loop.drift(to_raw_message(message))
        except Exception:
            # The store or the broker failed, not the training (the retrainer records those):
            # leave the offset uncommitted and read the record again after a pause.
            self.stats.errors += 1
            log.exception("drift record at offset %s not handled; retrying", message.offset())
            self._rewind(consumer, message)
            self._stop.wait(min(30.0, 2.0 ** min(self.stats.errors, 5)))
            return
        self._commit(consumer, message)

    def _commit(self, consumer: Consumer, message: Message) -> None:
        from confluent_kafka import KafkaException

        try:
            consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            # A rebalance moved the partition meanwhile: its new owner gets the event again
            # and finds the episode already trained (a DUPLICATE, no second training).
            log.info("offset %s not committed (%s); it will be re-delivered", message.offset(), exc)

    def _tick(self) -> None:
        try:
            # Also here, not only at start-up: a training orphaned by a crashed instance frees
            # its episode once stale, and the episode's next alarm can then train it.
            self.stats.interrupted_trainings += self.release_interrupted()
            self.loop.tick(datetime.now(UTC))
        except Exception:
            self.stats.errors += 1
            log.exception("time/amount trigger check failed; trying again next tick")

    def _send_dead_letter(self, letter: DeadLetter) -> None:
        publish = getattr(self.publisher, "publish", None)
        if publish is None:
            log.error("publisher %r cannot send dead letters; dropping %s", self.publisher, letter)
            return
        publish(self.settings.topics.dlq, None, letter.to_json())

    def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the worker thread; keep polling (paused) so the group keeps us."""
        consumer = self._consumer
        if consumer is None:  # not consuming (start-up, a test): nothing to keep alive
            return fn(*args)
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

    # -- interrupted trainings ----------------------------------------------------------------

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
