from __future__ import annotations

from datetime import UTC, datetime, timedelta

from driftline.config.pipeline import (
    DataAmountTriggerConfig,
    DriftTriggerConfig,
    EnsembleTriggerConfig,
    PerformanceTriggerConfig,
    TimeTriggerConfig,
)
from driftline.retrainer.triggers import TriggerContext, make_trigger, reacts_to_drift
from driftline.schemas import DriftEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def alarm(statistic: float = 2.0, reference: str | None = "dv-1") -> DriftEvent:
    return DriftEvent(
        drift_id="d-1",
        pipeline="p",
        detector="mmd",
        statistic=statistic,
        threshold=1.0,
        window_start=T0,
        window_end=T0,
        rows_seen=100,
        reference_data_version=reference,
    )


def test_drift_trigger_keys_by_episode_and_debounces_weak_alarms() -> None:
    t = make_trigger(DriftTriggerConfig(min_ratio=1.5))
    strong = t.decide(TriggerContext("p", T0, drift=alarm(2.0)))
    assert strong.fired and strong.key == "p/dv-1"
    assert strong.to_dict()["ratio"] == 2.0 and "d-1" in strong.reason
    weak = t.decide(TriggerContext("p", T0, drift=alarm(1.2)))
    assert not weak.fired and "min_ratio=1.5" in weak.reason
    assert not t.decide(TriggerContext("p", T0)).fired


def test_cooldown_blocks_until_it_has_passed() -> None:
    t = make_trigger(DriftTriggerConfig(cooldown_s=600))
    recent = TriggerContext("p", T0, drift=alarm(), last_retraining_at=T0 - timedelta(seconds=60))
    d = t.decide(recent)
    assert not d.fired and "cooldown" in d.reason and d.details["code"] == "cooldown"
    old = TriggerContext("p", T0, drift=alarm(), last_retraining_at=T0 - timedelta(seconds=601))
    assert t.decide(old).fired
    # Only drift-driven trainings count: a fresh bootstrap model does not block.
    after_bootstrap = TriggerContext("p", T0, drift=alarm(), last_training_at=T0)
    assert t.decide(after_bootstrap).fired


def test_time_trigger_buckets() -> None:
    t = make_trigger(TimeTriggerConfig(every_s=3600))
    first = t.decide(TriggerContext("p", T0, last_training_at=T0 - timedelta(hours=2)))
    same_hour = t.decide(
        TriggerContext("p", T0 + timedelta(minutes=5), last_training_at=T0 - timedelta(hours=2))
    )
    assert first.fired and first.key == same_hour.key
    assert not t.decide(TriggerContext("p", T0, last_training_at=T0 - timedelta(minutes=5))).fired


def test_data_amount_trigger() -> None:
    t = make_trigger(DataAmountTriggerConfig(rows=1000))
    assert not t.decide(TriggerContext("p", T0, rows_total=1500, rows_at_last_training=600)).fired
    d = t.decide(TriggerContext("p", T0, rows_total=1700, rows_at_last_training=600))
    assert d.fired and d.details["new_rows"] == 1100 and d.key == "p/data_amount/1000/1"


def test_performance_trigger_follows_metric_direction() -> None:
    acc = make_trigger(PerformanceTriggerConfig(metric="accuracy", threshold=0.8))
    mse = make_trigger(PerformanceTriggerConfig(metric="mse", threshold=2.0))
    seen: list[tuple[str, int, int]] = []

    def measure(value: float | None):  # type: ignore[no-untyped-def]
        def f(metric: str, window: int, min_rows: int) -> float | None:
            seen.append((metric, window, min_rows))
            return value

        return f

    def ctx(value: float | None) -> TriggerContext:
        return TriggerContext("p", T0, champion_id="mv-1", champion_metric=measure(value))

    assert acc.decide(ctx(0.7)).fired and not acc.decide(ctx(0.9)).fired
    assert mse.decide(ctx(3.0)).fired and not mse.decide(ctx(1.0)).fired
    assert not acc.decide(ctx(None)).fired
    assert seen[0] == ("accuracy", 500, 100)
    assert not acc.decide(TriggerContext("p", T0)).fired  # no champion, nothing measured


def test_ensembles_at_least_n_and_majority() -> None:
    members = [
        {"kind": "drift"},
        {"kind": "data_amount", "rows": 100},
        {"kind": "time", "every_s": 3600},
    ]
    two = make_trigger(EnsembleTriggerConfig(policy="at_least_n", n=2, members=members))
    majority = make_trigger(EnsembleTriggerConfig(policy="majority", members=members))
    recent = T0 - timedelta(minutes=1)
    only_drift = TriggerContext("p", T0, drift=alarm(), last_training_at=recent)
    drift_and_rows = TriggerContext("p", T0, drift=alarm(), last_training_at=recent, rows_total=500)
    for policy in (two, majority):
        d = policy.decide(only_drift)
        assert not d.fired and "1 of 3" in d.reason and len(d.to_dict()["members"]) == 3
        fired = policy.decide(drift_and_rows)
        assert fired.fired and fired.key == "p/dv-1"  # the drift episode wins the key
    anyone = make_trigger(EnsembleTriggerConfig(policy="at_least_n", n=1, members=members[1:]))
    assert anyone.decide(TriggerContext("p", T0, rows_total=500, last_training_at=recent)).fired


def test_reacts_to_drift() -> None:
    assert reacts_to_drift(DriftTriggerConfig())
    assert not reacts_to_drift(TimeTriggerConfig(every_s=1))
    assert reacts_to_drift(
        EnsembleTriggerConfig(members=[{"kind": "time", "every_s": 1}, {"kind": "drift"}])
    )
