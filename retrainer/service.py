"""The retrainer: drift events and clock ticks in, deployed model versions out.

One call runs one lifecycle step, every decision recorded in the store::

    trigger policy ─► claim the episode (store.begin_training; a duplicate stops here)
      ─► select rows + join labels ─(too few)─► SKIPPED + LabelRequest
      ─► snapshot data version ─► guard ─(unlikely to deploy)─► SKIPPED
      ─► choose parent (similar lifecycle / champion / scratch) ─► fit (budget, timeout)
      ─► gate vs champion on the holdout ─► register model ─► deploy + outbox ─► publish

**Training off the event loop.** The transports' retrainer loop calls this library from a
worker thread, so monitoring never stalls. Threads, not processes: torch and numpy release
the GIL in their kernels (the training's heavy part), the store's engine and open artifacts
are shared instead of re-opened per process, nothing needs pickling (the config, the store,
loaded models), and there is no process start-up (importing torch costs seconds). One worker
serializes trainings of a pipeline, and ``model.threads`` caps torch's threads, so the
monitor keeps a core. For isolation across machines, run retrainers as separate processes
(a consumer group); the store's episode claim keeps them from training the same episode.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import numpy as np

from driftline.config.pipeline import DriftTriggerConfig, PipelineConfig
from driftline.detectors.changepoint import estimate_change_point
from driftline.detectors.similarity import similarity
from driftline.lifecycle_store.exceptions import ConcurrentUpdateError, NotFoundError
from driftline.lifecycle_store.records import OutboxMessage, Training
from driftline.retrainer.adapters import Budget, load_adapter, make_adapter
from driftline.retrainer.clock import RetrainerClock
from driftline.retrainer.exceptions import TrainingError, WarmStartError
from driftline.retrainer.gate import GateBound, compare, gate_bound, holdout_mask, per_row_loss
from driftline.retrainer.guard import GuardFeatures, WastedComputationGuard, history_from_trainings
from driftline.retrainer.outcome import TrainingOutcome
from driftline.retrainer.publisher import Publisher, deployment_event, flush_outbox
from driftline.retrainer.reuse import (
    CANDIDATE_ROWS,
    MatchTest,
    ReuseDecision,
    candidates,
    coverage_test,
    decide,
    match_test,
)
from driftline.retrainer.selection import (
    Selection,
    feature_matrix,
    first_labelled,
    informative_event_ids,
    join_labels,
)
from driftline.retrainer.selection import select_training_data as _select
from driftline.retrainer.transfer import ParentChoice, choose_parent
from driftline.retrainer.triggers import (
    COOLDOWN,
    TriggerContext,
    TriggerDecision,
    make_trigger,
    reacts_to_drift,
)
from driftline.schemas import (
    DriftEvent,
    LabelRequest,
    ModelVersionEvent,
    SchemaError,
    Topics,
    utcnow,
)

__all__ = ["Retrainer"]

logger = logging.getLogger(__name__)

_HISTORY = 200
_ACTIVE = ("NEW", "RUNNING", "COMPLETE")
_COOLDOWN_CODE = COOLDOWN
# The re-estimated change point searches this many of the newest rows since the reference
# was installed; a segment on either side of the split has at least _CHANGE_MIN_SEGMENT.
_CHANGE_SEARCH_ROWS = 4096
_CHANGE_MIN_SEGMENT = 20


class Retrainer:
    """Turns drift events and clock ticks into trained, gated, published model versions.

    ``store`` is a ``LifecycleStore``; ``publisher`` any
    :class:`~driftline.retrainer.publisher.Publisher`;

    Example:
        >>> import tempfile
        >>> from driftline.lifecycle_store import LifecycleStore
        >>> from driftline.retrainer.publisher import InMemoryPublisher
        >>> d = tempfile.mkdtemp()
        >>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
        >>> config = PipelineConfig(name="demo", feature_names=["x", "y"])
        >>> with Retrainer(store, config, InMemoryPublisher()) as r:
        ...     r.tick()  # no labelled rows yet: nothing to train
        []
        >>> store.close()
    """

    def __init__(
        self,
        store: Any,
        config: PipelineConfig,
        publisher: Publisher,
        *,
        alias: str = "champion",
    ) -> None:
        self.store = store
        self.config = config
        self.publisher = publisher
        self.alias = alias
        self.pipeline = config.name
        self.topics = Topics(config.name)
        self._triggers = [(cfg, make_trigger(cfg)) for cfg in config.triggers]
        self._guard = WastedComputationGuard(config.guard)
        self._clock = RetrainerClock()  # event times never count past it (see clock.py)
        self._lock = threading.Lock()
        self._champion_cache: tuple[str, Any] | None = None
        self._config_json = config.model_dump(mode="json")
        if config.feature_names:
            store.ensure_pipeline(config.name, config.feature_names, self._config_json)

    # ------------------------------------------------------------------ public API
    def handle_drift(self, event: DriftEvent) -> TrainingOutcome:
        """Record a drift alarm and, if a trigger fires, run one training for its episode.

        Idempotent: a re-delivered alarm, or a second alarm of an episode that already has a
        NEW/RUNNING/COMPLETE training, returns ``DUPLICATE`` and trains nothing.
        """
        if event.pipeline != self.pipeline:
            return TrainingOutcome(
                "IGNORED",
                f"drift event of pipeline {event.pipeline!r}, this retrainer serves "
                f"{self.pipeline!r}",
            )
        self.store.record_drift(event)
        self._flush_quietly()
        if not self._drift_policies():
            return TrainingOutcome("IGNORED", "no trigger in the config reacts to drift alarms")
        return self._advance(event.episode_key, self._clock.clamp(event.window_end), latest=event)

    def tick(self, now: datetime | None = None) -> list[TrainingOutcome]:
        """Advance a pending drift episode, then the clock-driven triggers (time, data
        amount, performance) and the bootstrap.

        Without a champion, trains the first model on exactly the first ``bootstrap_rows``
        labelled rows once they exist. A drift episode that waits for post-change labels,
        for its cooldown, or for more labels after a losing challenger is retried here as
        soon as that changed — the one place both runtimes get the policy from, by calling
        ``tick`` regularly. At most one training per call. Pass event time as ``now`` when
        replaying.
        Also re-publishes outbox items a crash or an unreachable broker left pending.
        """
        now = now or utcnow()
        self._clock.saw(now)
        self._flush_quietly()
        try:
            self.store.pipeline(self.pipeline)
        except NotFoundError:
            return []  # the monitor creates the pipeline when it sees the first rows
        champion = self.store.current(self.pipeline, self.alias)
        if champion is None:
            return self._bootstrap(now)
        retried = self._retry_pending(now)
        if retried is not None and retried.status not in ("DUPLICATE", "IGNORED"):
            return [retried]
        policies = [(c, p) for c, p in self._triggers if not reacts_to_drift(c)]
        if not policies:
            return []
        ctx = self._context(now, champion=champion)
        for _, policy in policies:
            decision = policy.decide(ctx)
            if not decision.fired or decision.key is None:
                continue
            trigger = self._trigger_record(decision, now, ctx)
            outcome = self._claim_and_run(decision.key, trigger, since=ctx.last_training_at)
            if outcome is not None:
                return [outcome]
        return []

    def train(self, reason: str = "manual", *, since: datetime | None = None) -> TrainingOutcome:
        """Run one training now, whatever the triggers say (e.g. from the CLI)."""
        now = utcnow()
        trigger = {"kind": "manual", "fired": True, "reason": reason, "at": now.isoformat()}
        key = f"{self.pipeline}/manual/{uuid.uuid4().hex[:12]}"
        outcome = self._claim_and_run(key, trigger, since=since)
        assert outcome is not None  # a fresh key cannot be held already
        return outcome

    def close(self) -> None:
        """Nothing to release today; kept so a `Retrainer` works as a context manager."""

    def __enter__(self) -> Retrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ triggers
    def _context(
        self, now: datetime, drift: DriftEvent | None = None, champion: Any = None
    ) -> TriggerContext:
        at = retrained_at = None
        rows_at = 0
        trainings = [t for t in self.store.trainings(self.pipeline, limit=_HISTORY)]
        active = [t for t in trainings if t.status in _ACTIVE]
        if active:
            at = self._clock.clamp(_trained_at(active[0]))
            rows_at = int(active[0].trigger.get("rows_total", 0))
        drift_runs = [t for t in active if t.trigger.get("kind") != "bootstrap"]
        if drift_runs:
            retrained_at = self._clock.clamp(_trained_at(drift_runs[0]))
        if champion is None:
            champion = self.store.current(self.pipeline, self.alias)
        return TriggerContext(
            pipeline=self.pipeline,
            now=now,
            drift=drift,
            last_training_at=at,
            last_retraining_at=retrained_at,
            rows_total=self.store.archive(self.pipeline).row_count(),
            rows_at_last_training=rows_at,
            champion_id=None if champion is None else champion.id,
            champion_metric=self._champion_metric,
        )

    def _begin_training(
        self, episode_key: str, trigger: dict[str, Any], latest: DriftEvent
    ) -> tuple[Training, bool]:
        """The store's training record of ``episode_key`` and whether this call created it."""
        return self.store.begin_training(
            self.pipeline,
            episode_key=episode_key,
            trigger=trigger,
            config=self._config_json,
            drift_ids=[latest.drift_id],
        )

    def _trigger_record(
        self, decision: TriggerDecision, now: datetime, ctx: TriggerContext
    ) -> dict[str, Any]:
        return {
            **decision.to_dict(),
            "at": now.isoformat(),
            "rows_total": ctx.rows_total,
            "labels_total": self.labels_total(),
        }

    def labels_total(self) -> int:
        """Labels archived for the pipeline so far (0 before the pipeline exists): the one
        count the retry rules of both runtimes use."""
        try:
            return self.store.archive(self.pipeline).label_count()
        except NotFoundError:
            return 0

    def waiting_for_labels(self) -> int:
        """Drift episodes waiting for post-change labels (0 or 1: only the newest alarm's
        episode can be open), retried by :meth:`tick` as labels are archived."""
        if not self._drift_policies():
            return 0
        latest = None
        for rec in self.store.drift_events(self.pipeline, limit=1):
            try:
                latest = DriftEvent.from_dict(rec.payload)
            except SchemaError:
                return 0
        if latest is None:
            return 0
        attempts = self._attempts(latest.episode_key)
        if not attempts or attempts[0].metrics.get("code") != "labels":
            return 0
        closed = self._closed(latest.episode_key, latest, attempts, self._episode_config())
        return int(closed is None)

    def _bootstrap(self, now: datetime) -> list[TrainingOutcome]:
        labels = self.labels_total()
        if labels < self.config.bootstrap_rows:
            return []
        trigger = {
            "kind": "bootstrap",
            "fired": True,
            "reason": f"no champion and {labels} labels >= bootstrap_rows "
            f"{self.config.bootstrap_rows}",
            "at": now.isoformat(),
            "rows_total": self.store.archive(self.pipeline).row_count(),
            "labels_total": labels,
        }
        outcome = self._claim_and_run(f"{self.pipeline}/bootstrap-model", trigger, since=None)
        return [] if outcome is None else [outcome]

    def _claim_and_run(
        self, key: str, trigger: dict[str, Any], *, since: datetime | None
    ) -> TrainingOutcome | None:
        previous = self.store.trainings(self.pipeline, limit=1, episode_key=key)
        if (
            previous
            and previous[0].status in ("SKIPPED", "FAILED")
            and all(
                previous[0].trigger.get(k) == trigger.get(k) for k in ("rows_total", "labels_total")
            )
        ):
            return None  # nothing changed since the last attempt of this episode
        training, created = self.store.begin_training(
            self.pipeline, episode_key=key, trigger=trigger, config=self._config_json
        )
        if not created:
            return None
        return self._run(training.id, trigger, since=since, ratio=None, drift=None)

    # ------------------------------------------------------------------ drift episodes
    def _drift_policies(self) -> list[tuple[Any, Any]]:
        return [(c, p) for c, p in self._triggers if reacts_to_drift(c)]

    def _episode_config(self) -> DriftTriggerConfig:
        for cfg, _ in self._drift_policies():
            if isinstance(cfg, DriftTriggerConfig):
                return cfg
        return DriftTriggerConfig()

    def _episode_events(self, episode: str) -> list[DriftEvent]:
        """The recorded alarms of ``episode``, newest first."""
        out = []
        for rec in self.store.drift_events(self.pipeline, limit=_HISTORY):
            try:
                event = DriftEvent.from_dict(rec.payload)
            except SchemaError:
                continue  # recorded by an older schema: not part of a current episode
            if event.episode_key == episode:
                out.append(event)
        return out

    def _attempts(self, episode: str) -> list[Any]:
        """The trainings of ``episode`` (keys ``{episode}#{n}``), newest first."""
        prefix = episode + "#"
        return [
            t
            for t in self.store.trainings(self.pipeline, limit=_HISTORY)
            if t.episode_key.startswith(prefix)
        ]

    def _retry_pending(self, now: datetime) -> TrainingOutcome | None:
        """Advance the newest drift episode if it is still open and has been tried."""
        if not self._drift_policies():
            return None
        latest = None
        for rec in self.store.drift_events(self.pipeline, limit=1):
            try:
                latest = DriftEvent.from_dict(rec.payload)
            except SchemaError:
                return None
        if latest is None or not (
            self._attempts(latest.episode_key) or self._reuse_record(latest.episode_key)
        ):
            return None  # an alarm not handed over yet is the transport's to hand over
        return self._advance(latest.episode_key, now, latest=latest)

    def _advance(self, episode: str, now: datetime, *, latest: DriftEvent) -> TrainingOutcome:
        """One step of a drift episode: train, retry, defer or report it done.

        An episode ends when one of its challengers deploys, when a later deployment has
        replaced the reference it was raised against, or after ``max_attempts`` trainings;
        waiting for labels and cooldowns defer it without using attempts.
        """
        cfg = self._episode_config()
        attempts = self._attempts(episode)
        closed = self._closed(episode, latest, attempts, cfg)
        if closed is not None:
            held = next((t for t in attempts if t.status in _ACTIVE), attempts[0])
            if held.status in _ACTIVE:
                # Links the alarm to the training that answers it (no new training).
                self.store.begin_training(
                    self.pipeline,
                    episode_key=held.episode_key,
                    trigger=held.trigger,
                    config=self._config_json,
                    drift_ids=[latest.drift_id],
                )
            return TrainingOutcome("DUPLICATE", closed, training_id=held.id)
        deployed = next((t for t in attempts if t.metrics.get("deployed")), None)
        reused = None if deployed is not None else self._reuse(episode, latest, cfg)
        if reused is not None:
            return reused
        labels = self.labels_total()
        if attempts and not self._worth_retry(attempts[0], labels, cfg, attempts):
            return TrainingOutcome(
                "DUPLICATE",
                f"episode {episode} waits: {attempts[0].reason or attempts[0].status}",
                training_id=attempts[0].id,
            )
        ctx = self._context(now, drift=latest)
        decisions = [p.decide(ctx) for _, p in self._drift_policies()]
        decision = next((d for d in decisions if d.fired), decisions[0])
        deferred = not decision.fired and any(_deferred(d) for d in decisions)
        if deferred and attempts and attempts[0].metrics.get("code") == _COOLDOWN_CODE:
            return TrainingOutcome(
                "DUPLICATE",
                f"episode {episode} deferred: {decision.reason}",
                training_id=attempts[0].id,
            )
        trigger = self._trigger_record(decision, now, ctx)
        trigger["attempt"] = len(attempts) + 1
        events = self._episode_events(episode) or [latest]
        since = min(e.change_start for e in events)
        if deployed is not None:
            # A refinement: the deployment's own change point, with the labels since.
            trigger["refine"] = {
                "after": deployed.id,
                "target_labelled_new": self._refinement(deployed, attempts, cfg),
            }
            since = _parse_time(deployed.metrics.get("selection", {}).get("since")) or since
        elif decision.fired:
            since, trigger["change_point"] = self._change_start(events, since)
        training, created = self._begin_training(f"{episode}#{len(attempts) + 1}", trigger, latest)
        if not created:
            return TrainingOutcome(
                "DUPLICATE",
                f"episode {episode} already has training {training.id} ({training.status})",
                training_id=training.id,
                trigger=trigger,
            )
        if not decision.fired:
            reason = "; ".join(d.reason for d in decisions)
            code = _COOLDOWN_CODE if deferred else "trigger"
            self.store.update_training(
                training.id, status="SKIPPED", reason=reason, metrics={"code": code}
            )
            return TrainingOutcome("SKIPPED", reason, training_id=training.id, trigger=trigger)
        ratio = latest.statistic / latest.threshold if latest.threshold > 0 else None
        return self._run(training.id, trigger, since=since, ratio=ratio, drift=latest)

    def _change_start(
        self, events: list[DriftEvent], at_alarm: datetime
    ) -> tuple[datetime, dict[str, Any]]:
        """Where the episode's change began, re-estimated on the rows archived since its
        reference was installed (up to ``_CHANGE_SEARCH_ROWS`` of the newest).

        The alarm's own estimate is made when the detector fires, often a few rows after
        the change, when the post-change side of the split is too short to place it (a
        sudden change seen 8 rows after it began was placed 860 rows early, so the first
        training mixed both concepts). By the time the episode trains, more rows arrived;
        the same estimator (`estimate_change_point`) runs again on them. Its answer is used
        when it clears its no-change bound, else the alarm's estimate stays.
        """
        origin = min(e.window_start for e in events)
        note: dict[str, Any] = {"source": "alarm", "at": at_alarm.isoformat()}
        rows = self.store.archive(self.pipeline).read_rows(since=origin, last_n=_CHANGE_SEARCH_ROWS)
        if len(rows) < 2 * _CHANGE_MIN_SEGMENT:
            return at_alarm, note
        est = estimate_change_point(
            feature_matrix(rows, self.feature_names()), min_segment=_CHANGE_MIN_SEGMENT
        )
        note.update(rows_searched=len(rows), statistic=est.statistic, confident=est.confident)
        if not est.confident:
            return at_alarm, note
        found = _parse_time(rows.column("timestamp")[est.index].as_py())
        if found is None:
            return at_alarm, note
        if found.tzinfo is None:
            found = found.replace(tzinfo=at_alarm.tzinfo)
        note.update(source="refined", at=found.isoformat(), rows_after=len(rows) - est.index)
        return found, note

    def _closed(
        self, episode: str, latest: DriftEvent, attempts: list[Any], cfg: DriftTriggerConfig
    ) -> str | None:
        """Why ``episode`` needs no more trainings, or None while it is open.

        An episode that redeployed a past model (label-free reuse) stays open until its
        labelled gate has spoken: a challenger that beats the reused model replaces it, one
        that loses confirms it and ends the episode.
        """
        reuse = self._reuse_record(episode)
        reuse_deployment = None if reuse is None else reuse.metrics.get("deployment_id")
        for t in attempts:
            if t.status in ("NEW", "RUNNING"):
                return f"episode {episode} is training now ({t.id})"
            if t.status == "COMPLETE" and t.metrics.get("deployed"):
                if self._refinement(t, attempts, cfg) is not None:
                    return None  # one more training once enough post-change labels arrived
                return f"episode {episode} deployed model {t.model_version_id}"
            if (
                reuse is not None
                and reuse_deployment
                and t.status == "COMPLETE"
                and t.created_at >= reuse.created_at
            ):
                reused = reuse.metrics.get("reuse", {}).get("model_version_id")
                return (
                    f"episode {episode}: the gate confirmed the reused model {reused} "
                    f"(its challenger {t.id} did not beat it)"
                )
        trained = sum(t.status in ("COMPLETE", "FAILED") for t in attempts)
        if trained >= cfg.max_attempts:
            return (
                f"episode {episode} used its {trained} attempts (max_attempts="
                f"{cfg.max_attempts}) without a better model; the champion stays"
            )
        if latest.reference_deployment_id:
            history = self.store.history(self.pipeline, self.alias)
            answered = history[-1].id if history else None
            if answered not in (None, latest.reference_deployment_id, reuse_deployment):
                return f"episode {episode} was answered by deployment {history[-1].id}"
        return None

    def _worth_retry(
        self, last: Any, labels_now: int, cfg: DriftTriggerConfig, attempts: list[Any]
    ) -> bool:
        """Whether anything changed since ``last`` attempt that can change its outcome."""
        code = last.metrics.get("code") if isinstance(last.metrics, dict) else None
        if code == "deployed":
            target = self._refinement(last, attempts, cfg)
            have = int(last.metrics.get("selection", {}).get("labelled_new", 0))
            grown = labels_now - int(last.trigger.get("labels_total", 0))
            return target is not None and have + grown >= target
        if code == _COOLDOWN_CODE:
            return True  # the trigger itself says when the cooldown is over
        if code == "trigger":
            return False  # a weak alarm; a stronger one of the episode retries it
        if code is None and last.status == "FAILED":
            return True  # released after a crash mid-training: nothing was learned, go again
        grown = labels_now - int(last.trigger.get("labels_total", 0))
        new = int(last.metrics.get("selection", {}).get("labelled_new", 0))
        need_min = self.config.selection.min_labelled_rows
        if code == "unbeatable":
            # Retry once the post-change holdout could hold enough champion errors.
            bound = GateBound.from_dict(last.metrics.get("gate_bound", {}))
            rows = max(1, bound.holdout_rows)
            wanted = bound.rows_to_possible()
            return grown >= max(1, math.ceil(max(new, 1) * (wanted / rows - 1.0)))
        if code == "labels":
            # Ask again once a tenth of what was missing (at least one row) came in.
            return grown >= max(1, (need_min - new) // 10)
        # A losing, skipped-by-guard or failed attempt: wait for the labels to grow.
        return grown >= (cfg.retry_growth - 1.0) * max(new, need_min)

    def _refinement(
        self, deployed: Any, attempts: list[Any], cfg: DriftTriggerConfig
    ) -> int | None:
        """The post-change labelled rows a refinement of ``deployed`` waits for, or None when
        the episode needs none.

        A drift episode trains as soon as ``min_labelled_rows`` post-change labels exist;
        on a high-dimensional, many-class problem that can be fewer rows than a linear
        model of it has parameters, ``(features + 1) x classes`` (digits: 650), and the
        deployed model stays far below what the new concept allows while no later alarm
        comes (its reference is the new concept). Such a deployment gets one more training,
        once the post-change labels can fit that many rows (after the holdout) and grew
        ``retry_growth`` times. Only while it is still the champion, once per episode.
        """
        if not cfg.refine or deployed.trigger.get("refine"):
            return None
        for t in attempts:
            if t.id == deployed.id:
                break
            code = t.metrics.get("code") if isinstance(t.metrics, dict) else None
            if t.trigger.get("refine") and code not in ("labels", _COOLDOWN_CODE):
                return None  # refined already (deployed, lost, failed or unbeatable)
        classes = int(deployed.metrics.get("classes") or 0)
        fitted = int((deployed.resources or {}).get("train_rows") or 0)
        parameters = (len(self.feature_names()) + 1) * max(classes, 1)
        if classes == 0 or fitted <= 0 or fitted >= parameters:
            return None
        champion = self.store.current(self.pipeline, self.alias)
        if champion is None or champion.id != deployed.model_version_id:
            return None  # replaced since (a later episode, a rollback)
        have = int(deployed.metrics.get("selection", {}).get("labelled_new", 0))
        fit_share = 1.0 - self.config.gate.holdout_fraction
        return max(math.ceil(parameters / fit_share), math.ceil(cfg.retry_growth * have))

    # ------------------------------------------------------------------ label-free reuse
    def _reuse_record(self, episode: str) -> Any | None:
        """The reuse decision recorded for ``episode`` (one per episode), if any."""
        found = self.store.trainings(self.pipeline, limit=1, episode_key=f"{episode}/reuse")
        return found[0] if found else None

    def _reuse(
        self, episode: str, latest: DriftEvent, cfg: DriftTriggerConfig
    ) -> TrainingOutcome | None:
        """Redeploy a past model for ``episode`` if its window matches that model's data.

        Decided once per episode, as soon as ``reuse_min_rows`` rows after its first alarm
        are archived (see :mod:`driftline.retrainer.reuse`); the decision is stored as a
        SKIPPED training with code ``reuse`` (no model is trained). Returns the outcome of a
        redeployment, None when nothing was redeployed (the labelled path goes on).
        """
        if cfg.reuse_alpha is None or self._reuse_record(episode) is not None:
            return None
        if latest.threshold > 0 and latest.statistic / latest.threshold < cfg.min_ratio:
            return None  # an alarm too weak to act on
        champion = self.store.current(self.pipeline, self.alias)
        if champion is None or champion.data_version_id is None:
            return None
        past = candidates(self.store, self.pipeline, self.alias, champion)
        if not past:
            return None
        # Rows after the episode's first alarm are of the new concept whatever the change
        # point estimate's error (rows before the alarm may still be of the old one).
        since = min(e.window_end for e in (self._episode_events(episode) or [latest]))
        features = self.feature_names()
        rows = self.store.archive(self.pipeline).read_rows(since=since, last_n=CANDIDATE_ROWS // 2)
        if len(rows) < cfg.reuse_min_rows:
            return None  # decided on a later alarm or tick, once enough rows are archived
        now = self._clock.clamp(latest.window_end)
        trigger = {
            "kind": "reuse",
            "fired": True,
            "reason": f"drift alarm {latest.drift_id}: test {len(past)} past deployed models",
            "at": now.isoformat(),
            "drift_id": latest.drift_id,
            "rows_total": self.store.archive(self.pipeline).row_count(),
            "labels_total": self.labels_total(),
        }
        training, created = self._begin_training(f"{episode}/reuse", trigger, latest)
        if not created:
            return None
        started = time.perf_counter()
        decision = self._reuse_decision(feature_matrix(rows, features), champion, past, cfg)
        event, note = None, ""
        if decision.reuse and decision.model_version_id is not None:
            mv = self.store.model_version(decision.model_version_id)
            event, note = self._deploy(mv, champion, decision.reason, features)
        reason = decision.reason + (f"; {note}" if note else "")
        deployed = event is not None
        metrics = {
            "code": "reuse",
            "deployed": deployed,
            "deployment_id": None if event is None else event.deployment_id,
            "reuse": decision.to_dict(),
        }
        timings = {"total_s": time.perf_counter() - started}
        self.store.update_training(
            training.id,
            status="SKIPPED",
            reason=reason,
            metrics=metrics,
            resources={"timings": timings},
        )
        if not deployed:
            return None
        publish_note = self._flush_quietly()
        return TrainingOutcome(
            "REUSED",
            reason + (f"; {publish_note}" if publish_note else ""),
            training_id=training.id,
            model_version_id=decision.model_version_id,
            deployed=True,
            data_version_id=decision.data_version_id,
            metrics=metrics,
            timings=timings,
            trigger=trigger,
            event=event,
        )

    def _reuse_decision(
        self, window: np.ndarray, champion: Any, past: list[Any], cfg: DriftTriggerConfig
    ) -> ReuseDecision:
        alpha = cfg.reuse_alpha
        assert alpha is not None
        features = self.feature_names()

        def test(mv: Any, kind: Any = match_test) -> Any:
            table = self.store.read_data_version(mv.data_version_id)
            result: MatchTest = kind(
                window,
                feature_matrix(table, features),
                alpha=alpha,
                data_version_id=mv.data_version_id,
                model_version_id=mv.id,
                seed=self.config.selection.seed,
            )
            return result

        return decide(window, test(champion, coverage_test), [test(mv) for mv in past])

    def _champion_metric(self, metric: str, window: int, min_rows: int) -> float | None:
        champion = self.store.current(self.pipeline, self.alias)
        if champion is None:
            return None
        archive = self.store.archive(self.pipeline)
        features = self.feature_names()
        rows = archive.read_rows_checked(last_n=window * 4).table
        rows = rows.select(["event_id", "timestamp", *features])
        labelled, _ = join_labels(archive, rows, self.config.label.task)
        labelled = labelled.slice(max(0, len(labelled) - window))
        if len(labelled) < min_rows:
            return None
        model = self._champion_adapter(champion)
        y = labelled.column("label").to_numpy(zero_copy_only=False)
        return model.evaluate(feature_matrix(labelled, features), y).get(metric)

    def feature_names(self) -> list[str]:
        """The pipeline's features: from the config, else as the store recorded them."""
        if self.config.feature_names:
            return list(self.config.feature_names)
        return list(self.store.pipeline(self.pipeline).feature_names)

    # ------------------------------------------------------------------ one training
    def _run(
        self,
        training_id: str,
        trigger: dict[str, Any],
        *,
        since: datetime | None,
        ratio: float | None,
        drift: DriftEvent | None,
    ) -> TrainingOutcome:
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        started = clock
        self.store.update_training(training_id, status="RUNNING")
        try:
            return self._train(training_id, trigger, since, ratio, drift, timings, started)
        except TrainingError as exc:
            reason = str(exc)
        except Exception as exc:
            logger.exception("training %s failed", training_id)
            reason = f"{type(exc).__name__}: {exc}"
        timings["total_s"] = time.perf_counter() - started
        self.store.update_training(
            training_id,
            status="FAILED",
            reason=reason,
            metrics={"code": "failed"},
            resources={"timings": timings},
        )
        return TrainingOutcome(
            "FAILED", reason, training_id=training_id, timings=timings, trigger=trigger
        )

    def _train(
        self,
        training_id: str,
        trigger: dict[str, Any],
        since: datetime | None,
        ratio: float | None,
        drift: DriftEvent | None,
        timings: dict[str, float],
        started: float,
    ) -> TrainingOutcome:
        cfg = self.config
        features = self.feature_names()
        lap = _Lap(timings)

        if trigger.get("kind") == "bootstrap":
            sel = first_labelled(
                self.store.archive(self.pipeline), features, cfg.bootstrap_rows, cfg.label.task
            )
        else:
            sel = _select(
                self.store.archive(self.pipeline),
                features,
                cfg.selection,
                since=since,
                task=cfg.label.task,
            )
        lap("select_s")
        conflicts = _conflicts_note(sel)
        if conflicts:
            logger.warning("pipeline %s:%s", self.pipeline, conflicts)
        ids = [str(e) for e in sel.table.column("event_id").to_pylist()]
        hold = holdout_mask(ids, sel.is_new, cfg.gate.holdout_fraction, cfg.selection.seed)
        y_all = sel.table.column("label").to_numpy(zero_copy_only=False)
        short = self._too_few(sel, hold, y_all, post_change=drift is not None)
        if short is not None:
            return self._skip_for_labels(
                training_id, trigger, sel, short + conflicts, drift, timings, started
            )

        champion = self.store.current(self.pipeline, self.alias)
        parents: tuple[str, ...] = ()
        if champion is not None and cfg.selection.strategy != "new":
            parents = (champion.data_version_id,)
        dv = self.store.snapshot(
            self.pipeline,
            sel.table,
            parents=parents,
            combine="append" if parents else "root",
            coreset_k=cfg.selection.coreset_k,
        )
        self.store.update_training(training_id, data_version_id=dv.id)
        lap("snapshot_s")

        x_all = feature_matrix(sel.table, features)
        x_hold, y_hold = x_all[hold], y_all[hold]
        x_fit, y_fit = x_all[~hold], y_all[~hold]
        champ_model = None if champion is None else self._champion_adapter(champion)
        champ_metrics = None if champ_model is None else champ_model.evaluate(x_hold, y_hold)
        # The champion's per-row holdout loss, for the bound below and for the gate.
        champ_loss = (
            None
            if champ_model is None
            else per_row_loss(cfg.metric, y_hold, np.asarray(champ_model.predict(x_hold)))
        )
        if drift is not None and champ_loss is not None:
            bound = gate_bound(cfg.gate, cfg.metric, champ_loss)
            if bound is not None and not bound.possible:
                return self._skip_unbeatable(
                    training_id, trigger, sel, bound, dv.id, conflicts, timings, started
                )

        guard_record = self._guard_check(dv.id, champion, champ_metrics, ratio)
        lap("guard_s")
        if guard_record["skipped"]:
            reason = str(guard_record["reason"]) + conflicts
            self.store.update_training(
                training_id,
                status="SKIPPED",
                reason=reason,
                metrics={"guard": guard_record, "selection": sel.describe(), "code": "guard"},
                resources={"timings": {**timings, "total_s": time.perf_counter() - started}},
            )
            return TrainingOutcome(
                "SKIPPED",
                reason,
                training_id=training_id,
                data_version_id=dv.id,
                metrics={"guard": guard_record},
                timings=timings,
                trigger=trigger,
            )

        parent = choose_parent(
            self.store, self.pipeline, dv.id, cfg.model, champion, metric=cfg.metric
        )
        lap("transfer_s")
        model, report, parent = self._fit(parent, x_fit, y_fit)
        lap("fit_s")

        metric = cfg.metric
        ch_metrics = model.evaluate(x_hold, y_hold)
        gate = compare(
            cfg.gate,
            metric,
            ch_metrics,
            champ_metrics,
            per_row_loss(metric, y_hold, np.asarray(model.predict(x_hold))),
            champ_loss,
        )
        lap("gate_s")
        mv = self.store.register_model(
            self.pipeline,
            model.save(),
            framework=cfg.model.adapter,
            params=model.params,
            metrics={**ch_metrics, "train_rows": len(y_fit), "holdout_rows": int(hold.sum())},
            data_version_id=dv.id,
            parent_model_version_id=parent.model_version_id,
            training_id=training_id,
        )
        lap("register_s")
        event, deploy_note = (None, "")
        if gate.deploy:
            event, deploy_note = self._deploy(mv, champion, gate.reason, features)
        lap("deploy_s")
        deployed = event is not None
        reason = gate.reason + (f"; {deploy_note}" if deploy_note else "") + conflicts
        if mv.id == parent.model_version_id:
            # Same bytes as the parent: the recurring concept's own model comes back as is.
            reason += f"; the parent model v{mv.version} was kept unchanged (no fine-tuning "
            reason += "epoch beat it on validation)"
        metrics = {
            "deployed": deployed,
            "code": "deployed" if deployed else "gate",
            "gate": gate.to_dict(),
            "challenger": ch_metrics,
            "champion": champ_metrics,
            "champion_model_version_id": None if champion is None else champion.id,
            "parent": parent.to_dict(),
            "fit": report.to_dict(),
            "classes": len(np.unique(y_fit)) if cfg.label.task == "classification" else 1,
            "guard": guard_record,
            "selection": sel.describe(),
        }
        timings["total_s"] = time.perf_counter() - started
        self.store.update_training(
            training_id,
            status="COMPLETE",
            reason=reason,
            model_version_id=mv.id,
            metrics=metrics,
            resources={
                "timings": timings,
                "train_rows": len(y_fit),
                "epochs": report.epochs,
                "fit_seconds": report.seconds,
            },
        )
        if deployed:
            publish_note = self._flush_quietly()
            if publish_note:
                reason += f"; {publish_note}"
            timings["publish_s"] = time.perf_counter() - started - timings["total_s"]
            timings["total_s"] = time.perf_counter() - started
        return TrainingOutcome(
            "COMPLETE",
            reason,
            training_id=training_id,
            model_version_id=mv.id,
            deployed=deployed,
            parent=parent.without_adapter(),
            data_version_id=dv.id,
            metrics=metrics,
            timings=timings,
            trigger=trigger,
            event=event,
        )

    def _too_few(
        self, sel: Selection, hold: np.ndarray, y: np.ndarray, *, post_change: bool
    ) -> str | None:
        """Why the selection cannot train yet (None: it can). For a drift episode only the
        labelled rows from the change point on count: older labels describe the old concept."""
        cfg = self.config
        counted = int(sel.is_new.sum()) if post_change else sel.labelled
        if counted < cfg.selection.min_labelled_rows:
            what = "labelled rows after the change point" if post_change else "labelled rows"
            return (
                f"too few {what}: {counted} (of {sel.rows_considered} selected rows), "
                f"selection.min_labelled_rows={cfg.selection.min_labelled_rows}"
            )
        if int(hold.sum()) < cfg.gate.min_holdout_rows:
            return (
                f"too few labelled new rows for the gate's holdout: {int(hold.sum())} < "
                f"gate.min_holdout_rows={cfg.gate.min_holdout_rows}"
            )
        if cfg.label.task == "classification" and len(np.unique(y[~hold])) < 2:
            return f"the labelled rows hold a single class {np.unique(y).tolist()}"
        return None

    def _skip_for_labels(
        self,
        training_id: str,
        trigger: dict[str, Any],
        sel: Selection,
        reason: str,
        drift: DriftEvent | None,
        timings: dict[str, float],
        started: float,
    ) -> TrainingOutcome:
        request = None
        if drift is not None:
            ids = informative_event_ids(
                sel.unlabelled,
                self.feature_names(),
                self.config.selection.label_request_size,
                self.config.selection.seed,
            )
            if ids:
                request = LabelRequest(
                    request_id=f"lr-{uuid.uuid4().hex[:24]}",
                    pipeline=self.pipeline,
                    event_ids=ids,
                    reason=f"{reason}; these {len(ids)} events span the drifted window",
                    drift_id=drift.drift_id,
                    training_id=training_id,
                )
                self.store.enqueue(
                    OutboxMessage(
                        self.topics.label_requests, self.pipeline.encode(), request.to_json()
                    )
                )
        timings["total_s"] = time.perf_counter() - started
        self.store.update_training(
            training_id,
            status="SKIPPED",
            reason=reason,
            metrics={
                "selection": sel.describe(),
                "label_request": None if request is None else request.request_id,
                "code": "labels",
            },
            resources={"timings": timings},
        )
        if request is not None:
            self._flush_quietly()
        return TrainingOutcome(
            "SKIPPED",
            reason,
            training_id=training_id,
            timings=timings,
            trigger=trigger,
            label_request=request,
        )

    def _skip_unbeatable(
        self,
        training_id: str,
        trigger: dict[str, Any],
        sel: Selection,
        bound: GateBound,
        dv_id: str,
        conflicts: str,
        timings: dict[str, float],
        started: float,
    ) -> TrainingOutcome:
        """SKIPPED (code ``unbeatable``): the champion makes too few errors on the post-change
        holdout for any challenger to pass the gate, so no model is trained (nor counted as an
        attempt); the episode is tried again once the holdout could hold enough errors."""
        reason = (
            f"champion wrong on {bound.champion_errors} of {bound.holdout_rows} post-change "
            f"holdout rows: no challenger can pass the gate (it needs >= {bound.wins_needed} "
            f"wins at confidence {self.config.gate.confidence:g}); not trained{conflicts}"
        )
        timings["total_s"] = time.perf_counter() - started
        metrics = {"code": "unbeatable", "gate_bound": bound.to_dict(), "selection": sel.describe()}
        self.store.update_training(
            training_id,
            status="SKIPPED",
            reason=reason,
            metrics=metrics,
            resources={"timings": timings},
        )
        return TrainingOutcome(
            "SKIPPED",
            reason,
            training_id=training_id,
            data_version_id=dv_id,
            metrics=metrics,
            timings=timings,
            trigger=trigger,
        )

    def _guard_check(
        self,
        dv_id: str,
        champion: Any,
        champ_metrics: dict[str, float] | None,
        ratio: float | None,
    ) -> dict[str, Any]:
        features = None
        if champion is not None and champ_metrics is not None:
            new_cs = self.store.data_version_coreset(dv_id)
            old_cs = self.store.data_version_coreset(champion.data_version_id)
            sim = similarity(new_cs, old_cs) if new_cs is not None and old_cs is not None else 0.0
            score = (
                champ_metrics.get("accuracy", 0.0)
                if self.config.label.task == "classification"
                else champ_metrics.get("r2", 0.0)
            )
            features = GuardFeatures.from_raw(ratio, sim, score)
        history, skips = history_from_trainings(self.store.trainings(self.pipeline, limit=_HISTORY))
        verdict = self._guard.assess(features, history, skips)
        enforce = self.config.guard.mode == "enforce"
        return {
            **verdict.to_dict(),
            "mode": self.config.guard.mode,
            "skipped": (not verdict.train) and enforce,
        }

    def _fit(
        self, parent: ParentChoice, x: np.ndarray, y: np.ndarray
    ) -> tuple[Any, Any, ParentChoice]:
        cfg = self.config.model
        n_val = round(cfg.validation_fraction * len(y))
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(y))
        val_idx, fit_idx = order[:n_val], order[n_val:]
        validation = (x[val_idx], y[val_idx]) if n_val > 0 else None
        classes = (
            sorted({_plain(v) for v in y}) if self.config.label.task == "classification" else None
        )
        budget = Budget(
            max_epochs=cfg.epochs,
            patience=cfg.patience,
            max_seconds=cfg.max_seconds,
            timeout_s=cfg.timeout_s,
            metric=self.config.metric,
            threads=cfg.threads,
        )
        # Lifecycle transfer carries the parent's parameters along with its weights.
        params = {**cfg.params, "seed": cfg.seed}
        if parent.adapter is not None:
            params = {**parent.adapter.params, "seed": cfg.seed}
        model = make_adapter(cfg.adapter)
        model.build(params, x.shape[1], classes)
        try:
            report = model.fit(
                x[fit_idx],
                y[fit_idx],
                warm_start=parent.adapter,
                budget=budget,
                validation=validation,
            )
        except WarmStartError as exc:
            parent = ParentChoice("scratch", f"from scratch: warm start failed ({exc})")
            model = make_adapter(cfg.adapter)
            model.build({**cfg.params, "seed": cfg.seed}, x.shape[1], classes)
            report = model.fit(x[fit_idx], y[fit_idx], budget=budget, validation=validation)
        return model, report, parent

    def _champion_adapter(self, champion: Any) -> Any:
        with self._lock:
            cached = self._champion_cache
        if cached is not None and cached[0] == champion.id:
            return cached[1]
        model = load_adapter(champion.framework, self.store.load_model_artifact(champion.id))
        with self._lock:
            self._champion_cache = (champion.id, model)
        return model

    def _deploy(
        self, mv: Any, champion: Any, reason: str, features: list[str]
    ) -> tuple[ModelVersionEvent | None, str]:
        made: list[ModelVersionEvent] = []

        def outbox(deployment: Any, model: Any) -> OutboxMessage:
            event = deployment_event(deployment, model, features, reason=reason)
            made.append(event)
            return OutboxMessage(self.topics.model_versions, event.key, event.to_json())

        try:
            self.store.deploy(
                self.pipeline,
                self.alias,
                mv.id,
                reason=reason,
                expected_current=None if champion is None else champion.id,
                outbox=outbox,
            )
        except ConcurrentUpdateError as exc:
            return None, f"not deployed: the champion changed meanwhile ({exc})"
        return made[-1], ""

    def _flush_quietly(self) -> str:
        """Publish pending outbox items; a broker outage leaves them for the next call."""
        try:
            flush_outbox(self.store, self.publisher)
        except Exception as exc:
            logger.warning("publishing pending outbox items failed, will retry: %s", exc)
            return f"publishing deferred ({type(exc).__name__}: {exc})"
        return ""


class _Lap:
    """Records seconds since the previous lap under a phase name."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.last
        self.last = now


def _conflicts_note(sel: Selection) -> str:
    """A reason suffix naming the events left out for conflicting copies ('' if none)."""
    if not sel.conflicting:
        return ""
    examples = ", ".join(sel.conflicting[:3])
    return (
        f"; {len(sel.conflicting)} events left out: archived twice with different features or "
        f"time under one id (e.g. {examples}); give every event a unique id"
    )


def _trained_at(training: Any) -> datetime:
    return _parse_time(training.trigger.get("at")) or training.created_at


def _deferred(decision: TriggerDecision) -> bool:
    """Whether a cooldown (in the decision or one of its members) held it back."""
    if decision.details.get("code") == COOLDOWN:
        return True
    return any(_deferred(m) for m in decision.members)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
