"""Trigger policies: *when* to train (Modyn-style), each decision with its reason.

A policy looks at a :class:`TriggerContext` (the clock, the drift alarm if any, rows seen,
the last training, the champion's recent performance) and returns a :class:`TriggerDecision`.
The decision's ``key`` names the episode it starts, so one situation gives one training:
a drift episode (``{p}/{reference}``), a time bucket, a data-amount step, a champion whose
performance dropped. The retrainer stores every decision in the training's ``trigger``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from driftline.config.pipeline import (
    HIGHER_IS_BETTER,
    DataAmountTriggerConfig,
    DriftTriggerConfig,
    EnsembleTriggerConfig,
    PerformanceTriggerConfig,
    TimeTriggerConfig,
    TriggerConfig,
)
from driftline.schemas import DriftEvent

__all__ = [
    "COOLDOWN",
    "DataAmountTrigger",
    "DriftTrigger",
    "EnsembleTrigger",
    "PerformanceTrigger",
    "TimeTrigger",
    "TriggerContext",
    "TriggerDecision",
    "TriggerPolicy",
    "make_trigger",
]


COOLDOWN = "cooldown"
"""``details["code"]`` of a decision held back by a cooldown (to retry, not to drop)."""


@dataclass(frozen=True)
class TriggerContext:
    """What a trigger may look at. ``champion_metric(metric, window)`` is evaluated lazily
    (it reads labels and runs the champion), so only performance triggers pay for it.
    ``last_retraining_at`` is the last training other than the bootstrap one: cooldowns
    count from it, so the first model does not block the first drift training."""

    pipeline: str
    now: datetime
    drift: DriftEvent | None = None
    last_training_at: datetime | None = None
    last_retraining_at: datetime | None = None
    rows_total: int = 0
    rows_at_last_training: int = 0
    champion_id: str | None = None
    champion_metric: Callable[[str, int, int], float | None] | None = None


@dataclass(frozen=True)
class TriggerDecision:
    """Whether a trigger fired, why, and the episode key it claims when it did."""

    fired: bool
    kind: str
    reason: str
    key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    members: tuple[TriggerDecision, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for ``training.trigger``."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "fired": self.fired,
            "reason": self.reason,
            "key": self.key,
            **self.details,
        }
        if self.members:
            out["members"] = [m.to_dict() for m in self.members]
        return out


class TriggerPolicy(Protocol):
    """Decides from a context whether to train."""

    kind: str

    def decide(self, ctx: TriggerContext) -> TriggerDecision: ...


def _cooldown(kind: str, cooldown_s: float, ctx: TriggerContext) -> TriggerDecision | None:
    if cooldown_s <= 0 or ctx.last_retraining_at is None:
        return None
    waited = (ctx.now - ctx.last_retraining_at).total_seconds()
    if waited >= cooldown_s:
        return None
    return TriggerDecision(
        False,
        kind,
        f"cooldown: last training {waited:.0f}s ago, cooldown_s={cooldown_s:g}",
        details={"waited_s": waited, "code": COOLDOWN},
    )


class DriftTrigger:
    """Fires on a drift alarm whose statistic is at least ``min_ratio`` x its threshold.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> e = DriftEvent(drift_id="d1", pipeline="p", detector="mmd", statistic=3.0,
    ...                threshold=1.0, window_start=t0, window_end=t0, rows_seen=500)
    >>> d = DriftTrigger(DriftTriggerConfig()).decide(TriggerContext("p", t0, drift=e))
    >>> d.fired, d.key
    (True, 'p/bootstrap')
    """

    kind = "drift"

    def __init__(self, config: DriftTriggerConfig) -> None:
        self.config = config

    def decide(self, ctx: TriggerContext) -> TriggerDecision:
        if ctx.drift is None:
            return TriggerDecision(False, self.kind, "no drift alarm")
        e = ctx.drift
        ratio = e.statistic / e.threshold if e.threshold > 0 else float("inf")
        details = {
            "drift_id": e.drift_id,
            "statistic": e.statistic,
            "threshold": e.threshold,
            "ratio": ratio if ratio != float("inf") else 1e9,
            "reference_data_version": e.reference_data_version,
        }
        if ratio < self.config.min_ratio:
            return TriggerDecision(
                False,
                self.kind,
                f"drift statistic {e.statistic:.4g} is {ratio:.2f}x the threshold, below "
                f"min_ratio={self.config.min_ratio}",
                details=details,
            )
        cooling = _cooldown(self.kind, self.config.cooldown_s, ctx)
        if cooling is not None:
            return TriggerDecision(
                False, self.kind, cooling.reason, details={**details, **cooling.details}
            )
        return TriggerDecision(
            True,
            self.kind,
            f"drift alarm {e.drift_id}: statistic {e.statistic:.4g} > threshold "
            f"{e.threshold:.4g} ({ratio:.2f}x) after {e.rows_seen} rows",
            key=e.episode_key,
            details=details,
        )


class TimeTrigger:
    """Fires once per ``every_s`` bucket of the clock since the last training.

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> t = TimeTrigger(TimeTriggerConfig(every_s=60))
    >>> t.decide(TriggerContext("p", t0 + timedelta(seconds=30), last_training_at=t0)).fired
    False
    >>> t.decide(TriggerContext("p", t0 + timedelta(seconds=90), last_training_at=t0)).fired
    True
    """

    kind = "time"

    def __init__(self, config: TimeTriggerConfig) -> None:
        self.config = config

    def decide(self, ctx: TriggerContext) -> TriggerDecision:
        every = self.config.every_s
        bucket = int(ctx.now.timestamp() // every)
        key = f"{ctx.pipeline}/time/{every:g}/{bucket}"
        if ctx.last_training_at is not None:
            waited = (ctx.now - ctx.last_training_at).total_seconds()
            if waited < every:
                return TriggerDecision(
                    False, self.kind, f"last training {waited:.0f}s ago, every_s={every:g}"
                )
        cooling = _cooldown(self.kind, self.config.cooldown_s, ctx)
        if cooling is not None:
            return cooling
        return TriggerDecision(True, self.kind, f"{every:g}s passed since the last training", key)


class DataAmountTrigger:
    """Fires when ``rows`` new rows arrived since the last training.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> t = DataAmountTrigger(DataAmountTriggerConfig(rows=100))
    >>> t.decide(TriggerContext("p", t0, rows_total=150, rows_at_last_training=100)).fired
    False
    >>> t.decide(TriggerContext("p", t0, rows_total=250, rows_at_last_training=100)).key
    'p/data_amount/100/2'
    """

    kind = "data_amount"

    def __init__(self, config: DataAmountTriggerConfig) -> None:
        self.config = config

    def decide(self, ctx: TriggerContext) -> TriggerDecision:
        new = ctx.rows_total - ctx.rows_at_last_training
        details = {"new_rows": new, "rows_total": ctx.rows_total}
        if new < self.config.rows:
            return TriggerDecision(
                False,
                self.kind,
                f"{new} new rows since the last training, need {self.config.rows}",
                details=details,
            )
        cooling = _cooldown(self.kind, self.config.cooldown_s, ctx)
        if cooling is not None:
            return cooling
        step = ctx.rows_total // self.config.rows
        return TriggerDecision(
            True,
            self.kind,
            f"{new} new rows since the last training (>= {self.config.rows})",
            key=f"{ctx.pipeline}/data_amount/{self.config.rows}/{step}",
            details=details,
        )


class PerformanceTrigger:
    """Fires when the champion's metric on the newest labelled rows crosses ``threshold``.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> t = PerformanceTrigger(PerformanceTriggerConfig(threshold=0.8))
    >>> ctx = TriggerContext("p", t0, champion_id="mv-1", champion_metric=lambda m, w, n: 0.7)
    >>> t.decide(ctx).fired, t.decide(ctx).key
    (True, 'p/performance/mv-1')
    """

    kind = "performance"

    def __init__(self, config: PerformanceTriggerConfig) -> None:
        self.config = config

    def decide(self, ctx: TriggerContext) -> TriggerDecision:
        c = self.config
        if ctx.champion_id is None or ctx.champion_metric is None:
            return TriggerDecision(False, self.kind, "no champion to measure yet")
        value = ctx.champion_metric(c.metric, c.window, c.min_rows)
        if value is None:
            return TriggerDecision(
                False, self.kind, f"fewer than {c.min_rows} labelled recent rows to measure"
            )
        details = {"metric": c.metric, "value": value, "threshold": c.threshold}
        worse = value < c.threshold if HIGHER_IS_BETTER[c.metric] else value > c.threshold
        if not worse:
            return TriggerDecision(
                False,
                self.kind,
                f"champion {c.metric}={value:.4g} is within threshold {c.threshold}",
                details=details,
            )
        cooling = _cooldown(self.kind, c.cooldown_s, ctx)
        if cooling is not None:
            return cooling
        return TriggerDecision(
            True,
            self.kind,
            f"champion {c.metric}={value:.4g} on the last {c.window} labelled rows crossed "
            f"{c.threshold}",
            key=f"{ctx.pipeline}/performance/{ctx.champion_id}",
            details=details,
        )


class EnsembleTrigger:
    """Fires when at least ``n`` (or a majority) of its members fire.

    The episode key is the first firing member's key that names a drift episode, else the
    members' keys joined, so re-evaluating the same situation claims the same episode.

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> cfg = EnsembleTriggerConfig(policy="at_least_n", n=2, members=[
    ...     {"kind": "data_amount", "rows": 10}, {"kind": "time", "every_s": 60}])
    >>> ctx = TriggerContext("p", t0, rows_total=50)
    >>> EnsembleTrigger(cfg).decide(ctx).fired
    True
    """

    kind = "ensemble"

    def __init__(self, config: EnsembleTriggerConfig) -> None:
        self.config = config
        self.members = [make_trigger(m) for m in config.members]

    def decide(self, ctx: TriggerContext) -> TriggerDecision:
        decisions = tuple(m.decide(ctx) for m in self.members)
        fired = [d for d in decisions if d.fired]
        need = self.config.required
        if len(fired) < need:
            return TriggerDecision(
                False,
                self.kind,
                f"{len(fired)} of {len(decisions)} members fired, need {need}",
                members=decisions,
            )
        cooling = _cooldown(self.kind, self.config.cooldown_s, ctx)
        if cooling is not None:
            return TriggerDecision(
                False, self.kind, cooling.reason, details=cooling.details, members=decisions
            )
        drift_keys = [d.key for d in fired if d.kind == "drift" and d.key]
        key = drift_keys[0] if drift_keys else "+".join(str(d.key) for d in fired)
        return TriggerDecision(
            True,
            self.kind,
            f"{len(fired)} of {len(decisions)} members fired (need {need}): "
            + "; ".join(d.reason for d in fired),
            key=key,
            members=decisions,
        )


def make_trigger(config: TriggerConfig) -> TriggerPolicy:
    """The policy for one trigger config.

    >>> make_trigger(DriftTriggerConfig()).kind
    'drift'
    """
    policies: dict[type[Any], type[Any]] = {
        DriftTriggerConfig: DriftTrigger,
        TimeTriggerConfig: TimeTrigger,
        DataAmountTriggerConfig: DataAmountTrigger,
        PerformanceTriggerConfig: PerformanceTrigger,
        EnsembleTriggerConfig: EnsembleTrigger,
    }
    policy: TriggerPolicy = policies[type(config)](config)
    return policy


def reacts_to_drift(config: TriggerConfig) -> bool:
    """Whether a trigger (or any ensemble member) looks at drift alarms."""
    if isinstance(config, EnsembleTriggerConfig):
        return any(reacts_to_drift(m) for m in config.members)
    return isinstance(config, DriftTriggerConfig)
