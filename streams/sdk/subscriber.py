"""ModelSubscriber: a consumer service follows the deployed model of a pipeline by itself.

A few lines in the consumer service::

    with ModelSubscriber("kafka:9092", "fraud") as sub:
        y = sub.predict(X)          # always the current champion

or from asyncio::

    async with ModelSubscriber("kafka:9092", "fraud") as sub:
        await sub.wait_for_version()
        y = sub.predict(X)

How it works. ``{p}.model-versions`` is a compacted topic keyed ``{p}/{alias}``, so its
latest record per key is the model deployed under that alias. The subscriber assigns itself
every partition from the beginning (no consumer group offsets: each subscriber reads the whole
topic, so a new one finds the current champion at once), reads up to the end, loads only the
newest version of its alias, and then follows new records as they come.

Anyone who can write to the topic is treated as hostile, so before touching anything an event
names, the subscriber verifies the publisher's Ed25519 signature against its own trusted keys
(``verify_keys``, default ``$DRIFTLINE_VERIFY_KEYS``; see `driftline.schemas.signing`). Then
``artifact_uri`` is resolved only inside its own artifact store (``artifacts``, default
``$DRIFTLINE_ARTIFACTS``, else ``artifacts``: no other path, scheme, host or query), the file's
size is checked against ``max_artifact_bytes`` before it is read, its sha256 is checked against
``content_hash``, and the bytes go through the ``loader`` (by default the operator-registered
model adapter named by ``framework``; an event never names a module). The result replaces the
served model in one reference assignment: a ``predict`` already running keeps the model it
started with. When anything fails the old model keeps serving, the reason is logged, counted in
:attr:`ModelSubscriber.failures` and kept in :attr:`ModelSubscriber.last_error`, and
:attr:`ModelSubscriber.healthy` turns False until a newer deployment is served.

Metrics. Swaps, refusals by reason code, health and the served model version are Prometheus
metrics (`driftline.streams.sdk.metrics`) in ``registry``, by default prometheus_client's
global registry; the subscriber opens no port. Expose them with the service's own metrics::

    prometheus_client.start_http_server(9100)   # or mount make_asgi_app() in the web app

``registry=None`` turns them off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from prometheus_client import REGISTRY, CollectorRegistry

from driftline.errors import ConfigError
from driftline.lifecycle_store.artifacts import ArtifactStore, sha256_hex
from driftline.lifecycle_store.exceptions import ArtifactCorruptedError, NotFoundError, StoreError
from driftline.schemas import ModelVersionEvent, ModelVersionVerifier, SchemaError, Topics
from driftline.streams.sdk.metrics import SubscriberMetrics

if TYPE_CHECKING:
    from driftline.config.settings import Settings

__all__ = [
    "Loader",
    "ModelSubscriber",
    "ServedModel",
    "SwapCallback",
    "SwapFailure",
]

log = logging.getLogger(__name__)

_FALLBACK_DEPTH = 5
MAX_ARTIFACT_BYTES = 1 << 30
"""Default size limit of one artifact (1 GiB): checked before a byte is read."""

Loader = Callable[[ModelVersionEvent, bytes], Any]
"""Turns verified artifact bytes into a model object with ``predict``."""


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and the deployment it came from.

    >>> event = ModelVersionEvent(pipeline="fraud", deployment_id="d1", model_version_id="mv1",
    ...     artifact_uri="file:///m.bin", content_hash="0" * 64, framework="torch",
    ...     feature_names=["x"])
    >>> ServedModel(event=event, model="weights").model_version_id
    'mv1'
    """

    event: ModelVersionEvent
    model: Any
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def model_version_id(self) -> str:
        return self.event.model_version_id


@dataclass(frozen=True)
class SwapFailure:
    """A deployment the subscriber could not serve, and why (the old model kept serving).

    ``code`` is the reason code of the refusal metric (`driftline.streams.sdk.metrics.REASONS`),
    ``reason`` the message that was logged.
    """

    event: ModelVersionEvent | None
    reason: str
    code: str = "load_failed"
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class _Refused(Exception):
    """An artifact that cannot be served, with the reason code of the refusal."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


SwapCallback = Callable[[ServedModel, "ServedModel | None"], None]
"""Called after each swap with the new and the previous served model."""


def default_loader(event: ModelVersionEvent, data: bytes) -> Any:
    """Load ``data`` with the retrainer's model adapter registered for ``event.framework``."""
    from driftline.retrainer.adapters import load_adapter

    return load_adapter(event.framework, data)


class ModelSubscriber:
    """Follow the model deployed under ``alias`` of ``pipeline`` on ``{p}.model-versions``.

    ``on_swap(new, old)`` runs on the subscriber's thread after each swap; ``loader(event,
    bytes)`` replaces the adapter-based loading (e.g. to wrap the model). ``verify_keys`` are
    the publisher's public keys, ``artifacts`` the artifact store models are read from (see
    the module docstring); `from_settings` takes both, and the Kafka security, from a
    driftline config. ``consumer_config`` adds or overrides confluent-kafka settings.
    ``registry`` receives the subscriber's metrics (None: none are kept).

    >>> from driftline.schemas import ModelVersionSigner
    >>> key = ModelVersionSigner.generate().public_key  # in a service: the retrainer's
    >>> sub = ModelSubscriber("127.0.0.1:9092", "fraud", verify_keys=[key],
    ...                       loader=lambda event, data: data)
    >>> sub.topic, sub.key, sub.current_version is None
    ('fraud.model-versions', b'fraud/champion', True)
    """

    def __init__(
        self,
        bootstrap_servers: str,
        pipeline: str,
        alias: str = "champion",
        on_swap: SwapCallback | None = None,
        loader: Loader | None = None,
        *,
        verify_keys: Sequence[str] | None = None,
        artifacts: str | None = None,
        max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
        consumer_config: Mapping[str, Any] | None = None,
        poll_timeout_s: float = 0.2,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if poll_timeout_s <= 0:
            raise ValueError(f"poll_timeout_s must be > 0, got {poll_timeout_s}")
        if max_artifact_bytes < 1:
            raise ValueError(f"max_artifact_bytes must be >= 1, got {max_artifact_bytes}")
        if verify_keys is None:
            verify_keys = os.environ.get("DRIFTLINE_VERIFY_KEYS", "").split(",")
        if not any(key.strip() for key in verify_keys):
            # Every event would be refused (``no_keys``): a subscriber that can never serve.
            raise ConfigError(
                "ModelSubscriber needs the retrainer's public key to verify model versions: "
                "pass verify_keys= or set DRIFTLINE_VERIFY_KEYS (driftline keys generate)"
            )
        self._verifier = ModelVersionVerifier(verify_keys)
        self._artifacts = ArtifactStore(
            artifacts or os.environ.get("DRIFTLINE_ARTIFACTS") or "artifacts"
        )
        self._max_artifact_bytes = max_artifact_bytes
        self.bootstrap_servers = bootstrap_servers
        self.pipeline = pipeline
        self.alias = alias
        self.topic = Topics(pipeline).model_versions
        self.key = f"{pipeline}/{alias}".encode()
        self._on_swap = on_swap
        self._loader: Loader = loader or default_loader
        self._consumer_config = dict(consumer_config or {})
        self._poll_timeout_s = poll_timeout_s
        self._served: ServedModel | None = None
        self._seen_deployments: set[str] = set()
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: SwapFailure | None = None
        self._newest_failed = False
        self.swaps = 0
        self.failures = 0
        self._metrics = None if registry is None else SubscriberMetrics(pipeline, alias, registry)

    @classmethod
    def from_settings(cls, settings: Settings, alias: str = "champion", **options: Any) -> Self:
        """A subscriber configured like the rest of a deployment: brokers and their security,
        the artifact store, and the keys that verify model versions."""
        from driftline.streams.kafka.clients import client_config

        options.setdefault("verify_keys", settings.model_version_verifier().public_keys)
        options.setdefault("artifacts", settings.artifacts)
        options.setdefault("consumer_config", client_config(settings))
        return cls(settings.kafka_bootstrap_servers, settings.pipeline, alias, **options)

    # -- what a consumer service reads -------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while the newest deployment seen could not be served (a forged or corrupt
        event, an artifact that fails its hash): the model served, if any, is older."""
        return self._newest_failed is False

    @property
    def served(self) -> ServedModel | None:
        """The model being served and its deployment event, or None before the first one."""
        return self._served

    @property
    def model(self) -> Any:
        """The served model object; :class:`LookupError` when none is deployed yet."""
        served = self._served
        if served is None:
            raise LookupError(
                f"no model deployed under {self.key.decode()!r} yet; wait with "
                "wait()/wait_for_version() or check current_version first"
            )
        return served.model

    @property
    def current_version(self) -> ModelVersionEvent | None:
        """The deployment event of the served model (id, metrics, lineage), or None."""
        served = self._served
        return None if served is None else served.event

    @property
    def ready(self) -> bool:
        """True once the topic has been read to its end at start-up."""
        return self._ready.is_set()

    def predict(self, x: Any) -> Any:
        """``model.predict(x)`` on the served model; a swap during the call does not affect it."""
        return self.model.predict(x)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start following the topic on a background thread (returns at once)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"model-subscriber-{self.pipeline}-{self.alias}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread; the served model stays readable."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def wait_until_ready(self, timeout: float | None = 30.0) -> bool:
        """Block until the start-up read reached the end of the topic; False on timeout."""
        return self._ready.wait(timeout)

    def wait(
        self,
        model_version_id: str | None = None,
        *,
        deployment_id: str | None = None,
        timeout: float | None = 30.0,
    ) -> ModelVersionEvent:
        """Block until the served deployment matches (any deployment when both are None).

        Raises :class:`TimeoutError` naming what was awaited and what is served.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                event = self.current_version
                if event is not None and _matches(event, model_version_id, deployment_id):
                    return event
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(self._timeout_message(model_version_id, deployment_id))
                self._changed.wait(remaining)

    async def wait_for_version(
        self,
        model_version_id: str | None = None,
        *,
        deployment_id: str | None = None,
        timeout: float | None = 30.0,
        interval_s: float = 0.05,
    ) -> ModelVersionEvent:
        """Await the served deployment matching (any when both are None) without blocking
        the event loop; cancellable. Raises :class:`TimeoutError` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self.current_version
            if event is not None and _matches(event, model_version_id, deployment_id):
                return event
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(self._timeout_message(model_version_id, deployment_id))
            await asyncio.sleep(interval_s)

    def __enter__(self) -> Self:
        self.start()
        self.wait_until_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        self.start()
        await asyncio.to_thread(self.wait_until_ready)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- applying one deployment event --------------------------------------------------------

    def apply(self, event: ModelVersionEvent) -> bool:
        """Load, verify and swap to ``event``'s model; True when it is now served.

        Called by the background thread for each record; callable directly (e.g. in tests or
        with another transport). A deployment already applied is ignored.
        """
        if event.pipeline != self.pipeline or event.alias != self.alias:
            return False
        try:
            self._verifier.verify(event)
        except SchemaError as exc:
            code = getattr(exc, "reason", "bad_signature")
            self._fail(event, f"{code}: {exc}", code)
            return False
        if event.deployment_id in self._seen_deployments:
            return False
        previous = self._served
        if previous is not None and _order(event) <= _order(previous.event):
            self._refuse_stale(event, previous)
            return False
        self._seen_deployments.add(event.deployment_id)
        try:
            model = self._load(event, previous)
        except _Refused as exc:
            cause = exc.__cause__ or exc
            self._fail(event, f"{type(cause).__name__}: {cause}", exc.code)
            return False
        self._newest_failed = False
        served = ServedModel(event=event, model=model)
        with self._changed:
            # One reference assignment: in-flight predict() calls hold the old object.
            self._served = served
            self.swaps += 1
            self._changed.notify_all()
        if self._metrics is not None:
            self._metrics.swapped(event.model_version_id, event.deployment_id)
        log.info(
            "serving model version %s of %s (deployment %s, was %s)",
            event.model_version_id,
            self.key.decode(),
            event.deployment_id,
            None if previous is None else previous.model_version_id,
        )
        if self._on_swap is not None:
            try:
                self._on_swap(served, previous)
            except Exception:
                log.exception("on_swap callback raised; the new model is served regardless")
        return True

    def _load(self, event: ModelVersionEvent, previous: ServedModel | None) -> Any:
        try:
            # Even for bytes already held: an event naming another store is never served.
            key = self._artifacts.key_of(event.artifact_uri)
        except StoreError as exc:
            raise _Refused("outside_store", str(exc)) from exc
        if previous is not None and previous.event.content_hash == event.content_hash:
            # A rollback or re-deployment of the bytes we already hold: no reload needed.
            return previous.model
        try:
            data = self._artifacts.get(key, max_bytes=self._max_artifact_bytes)
        except NotFoundError as exc:
            raise _Refused("not_found", str(exc)) from exc
        except StoreError as exc:
            raise _Refused("too_large", str(exc)) from exc
        except Exception as exc:  # the object store is unreachable or denies access
            raise _Refused("unreadable", str(exc)) from exc
        digest = sha256_hex(data)
        if digest != event.content_hash:
            raise _Refused("hash_mismatch", "") from ArtifactCorruptedError(
                f"artifact {event.artifact_uri!r} has sha256 {digest}, the deployment says "
                f"{event.content_hash}; the file was changed or replaced after registration"
            )
        try:
            return self._loader(event, data)
        except Exception as exc:
            raise _Refused("load_failed", str(exc)) from exc

    def _fail(
        self, event: ModelVersionEvent | None, reason: str, code: str, *, degraded: bool = True
    ) -> None:
        """Count, record and log a refusal; ``degraded=False`` when the newest deployment is
        still the one served (a replay of an older one)."""
        self.failures += 1
        self._newest_failed = self._newest_failed or degraded
        self.last_error = SwapFailure(event=event, reason=reason, code=code)
        if self._metrics is not None:
            self._metrics.refused(code, degraded=degraded)
        served = self._served
        # %r and !r: the event (unverified, maybe forged) and the reason quoting it are
        # untrusted text; a newline in them must not start a forged log line.
        log.warning(
            "cannot serve %s (refused: %s): %r; keeping %s",
            "a record" if event is None else f"model version {event.model_version_id[:80]!r}",
            code,
            reason,
            "no model" if served is None else f"model version {served.model_version_id}",
        )

    def _refuse_stale(self, event: ModelVersionEvent, served: ServedModel) -> None:
        """A genuine but older deployment sent again (a replay): refused and counted; the
        newest deployment is still the one served, so the subscriber stays healthy."""
        reason = (
            f"stale: deployment {event.deployment_id[:80]!r} (seq {event.deployment_seq}) is "
            f"older than the served {served.event.deployment_id[:80]!r} (seq "
            f"{served.event.deployment_seq}); a replayed event"
        )
        self._fail(event, reason, "stale", degraded=False)

    def _timeout_message(self, model_version_id: str | None, deployment_id: str | None) -> str:
        wanted = model_version_id or deployment_id or "any model version"
        served = self.current_version
        now = "nothing" if served is None else served.model_version_id
        hint = "" if self.last_error is None else f"; last failure: {self.last_error.reason}"
        return f"timed out waiting for {wanted} on {self.key.decode()!r}, serving {now}{hint}"

    # -- the background thread ----------------------------------------------------------------

    def _run(self) -> None:
        from confluent_kafka import Consumer

        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            # Offsets are never committed: each subscriber reads the whole compacted topic.
            "group.id": f"driftline-subscriber-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
        config.update(self._consumer_config)
        while not self._stop.is_set():
            consumer = Consumer(config)
            try:
                if self._catch_up(consumer):
                    self._follow(consumer)
            except Exception as exc:
                # Transient broker states (a new topic without a leader yet, a broker restart)
                # must not end the subscription: read again; applied deployments are skipped.
                log.warning("model subscriber for %s: %s; reconnecting", self.key.decode(), exc)
                self._stop.wait(1.0)
            finally:
                consumer.close()

    def _assign(self, consumer: Any) -> list[Any] | None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        while not self._stop.is_set():
            try:
                metadata = consumer.list_topics(self.topic, timeout=5.0)
            except Exception as exc:  # broker not reachable yet: keep trying
                log.debug("no metadata for %s yet: %s", self.topic, exc)
                self._stop.wait(1.0)
                continue
            topic = metadata.topics.get(self.topic)
            if topic is not None and topic.error is None and topic.partitions:
                partitions = [
                    TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in topic.partitions
                ]
                consumer.assign(partitions)
                return partitions
            # The topic appears when the first retrainer starts; until then nothing is deployed,
            # so the start-up read is done: `wait_until_ready` returns and `model` says so.
            missing = topic is None or (
                topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            )
            if missing and not self._ready.is_set():
                log.warning("%s does not exist yet: no model deployed", self.topic)
                self._ready.set()
            self._stop.wait(1.0)
        return None

    def _catch_up(self, consumer: Any) -> bool:
        partitions = self._assign(consumer)
        if partitions is None:
            return False
        ends: dict[int, int] = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10.0)
            if high > low:
                ends[tp.partition] = high
        # Compaction may not have run yet: keep the last few deployments of our alias.
        recent: deque[ModelVersionEvent] = deque(maxlen=_FALLBACK_DEPTH)
        while ends and not self._stop.is_set():
            message = consumer.poll(self._poll_timeout_s)
            if message is None:
                continue
            if message.error() is None:
                event = self._decode(message)
                if event is not None and self._trusted(event):
                    recent.append(event)
            end = ends.get(message.partition())
            if end is not None and message.offset() is not None and message.offset() + 1 >= end:
                del ends[message.partition()]
        # Serve the newest deployment (by its signed order, not by where it was read: a
        # replayed old one may come last); if it cannot be loaded, the newest one that can.
        # After a reconnect the newest is one already applied (or tried): keep what is served.
        for event in sorted(recent, key=_order, reverse=True):
            if event.deployment_id in self._seen_deployments or self.apply(event):
                break
        self._ready.set()
        with self._changed:
            self._changed.notify_all()
        return not self._stop.is_set()

    def _trusted(self, event: ModelVersionEvent) -> bool:
        """Whether ``event`` is one of ours and verifies (junk must not push the genuine
        deployments out of the few kept at start-up); refusals are counted by `apply`."""
        if event.pipeline != self.pipeline or event.alias != self.alias:
            return False
        try:
            self._verifier.verify(event)
        except SchemaError:
            self.apply(event)  # counted and logged as a refusal
            return False
        return True

    def _follow(self, consumer: Any) -> None:
        while not self._stop.is_set():
            message = consumer.poll(self._poll_timeout_s)
            if message is None:
                continue
            if message.error() is not None:
                log.debug("consumer error on %s: %s", self.topic, message.error())
                continue
            event = self._decode(message)
            if event is not None:
                self.apply(event)

    def _decode(self, message: Any) -> ModelVersionEvent | None:
        if message.key() != self.key:
            return None
        value = message.value()
        if value is None:  # a tombstone: the alias was deleted; keep serving what we have
            return None
        try:
            return ModelVersionEvent.from_json(value)
        except SchemaError as exc:
            self._fail(
                None, f"undecodable record at offset {message.offset()}: {exc}", "undecodable"
            )
            return None


def _order(event: ModelVersionEvent) -> tuple[int, datetime]:
    """Where ``event`` stands in its alias's history: the signed ``deployment_seq``, then
    ``deployed_at`` (events of publishers older than the seq carry none: they come first)."""
    return (event.deployment_seq or 0, event.deployed_at)


def _matches(
    event: ModelVersionEvent, model_version_id: str | None, deployment_id: str | None
) -> bool:
    if model_version_id is not None and event.model_version_id != model_version_id:
        return False
    return deployment_id is None or event.deployment_id == deployment_id
