"""The retrainer end to end on a real store with real torch training."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.adapters import register_adapter
from driftline.retrainer.adapters.torch_mlp import TorchMLP
from driftline.retrainer.publisher import InMemoryPublisher
from driftline.retrainer.service import Retrainer
from driftline.schemas import LabelRequest, ModelVersionEvent
from tests.retrainer.conftest import FEATURES, Feed, concept, drift_event, noisy


def make(store: LifecycleStore, name: str, publisher: Any = None, **overrides: Any) -> Retrainer:
    config = PipelineConfig.from_dict({"name": name, "feature_names": FEATURES, **overrides})
    return Retrainer(store, config, publisher or InMemoryPublisher())


def bootstrap(r: Retrainer, feed: Feed, seed: int = 0) -> Any:
    x, y = concept("A", 1500, seed)
    feed.rows(x, y)
    [outcome] = r.tick(feed.clock)
    assert outcome.status == "COMPLETE" and outcome.deployed, outcome.reason
    return outcome


@pytest.mark.slow
def test_recurring_concept_warm_starts_from_its_own_lifecycle(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("aba")
    pub = InMemoryPublisher()
    # The labelled path (label-free reuse, which would answer the return of A before any
    # label, is tested in test_reuse).
    r = make(store, "aba", pub, triggers=[{"kind": "drift", "reuse_alpha": None}])
    first = bootstrap(r, feed)
    assert first.parent is not None and first.parent.source == "scratch"
    assert first.trigger["kind"] == "bootstrap"

    xb, yb = concept("B", 1500, 1)
    start, end, _ = feed.rows(xb, yb)
    to_b = r.handle_drift(drift_event("aba", first.data_version_id, start, end))
    assert to_b.status == "COMPLETE" and to_b.deployed, to_b.reason
    assert to_b.metrics["challenger"]["accuracy"] > to_b.metrics["champion"]["accuracy"] + 0.2
    # B is unlike anything seen: a new concept starts from scratch, not from A's weights.
    assert to_b.parent is not None and to_b.parent.source == "scratch"
    assert "min_similarity" in to_b.parent.reason

    xa, ya = concept("A", 1500, 2)
    start, end, _ = feed.rows(xa, ya)
    back = r.handle_drift(drift_event("aba", to_b.data_version_id, start, end))
    assert back.status == "COMPLETE" and back.deployed, back.reason
    # The return to A transfers A's lifecycle, not the latest (B's) model.
    assert back.parent is not None and back.parent.source == "similar"
    assert back.parent.model_version_id == first.model_version_id
    assert back.parent.data_version_id == first.data_version_id
    assert back.parent.similarity is not None and back.parent.similarity > 0.5
    fit = back.metrics["fit"]
    assert fit["warm_started"] and fit["start_metric"] > 0.85  # A's model already fits A

    # Lineage and the training record say the same. When fine-tuning never beats A's model
    # on validation, A's model itself is redeployed.
    mv = store.model_version(back.model_version_id)
    if mv.id == first.model_version_id:
        assert "kept unchanged" in back.reason and fit["note"].startswith("kept epoch 0")
    else:
        assert mv.parent_model_version_id == first.model_version_id
    training = store.training(back.training_id)
    assert training.metrics["parent"]["source"] == "similar"
    assert training.trigger["kind"] == "drift" and training.status == "COMPLETE"
    assert store.current("aba").id == back.model_version_id

    # Every deployment was published once, as a verifiable pointer.
    assert [e.model_version_id for e in pub.model_versions] == [
        first.model_version_id,
        to_b.model_version_id,
        back.model_version_id,
    ]
    last: ModelVersionEvent = pub.model_versions[-1]
    assert last == back.event
    assert last.feature_names == FEATURES and last.data_version_id == mv.data_version_id
    assert last.parent_model_version_id == mv.parent_model_version_id
    artifact = store.load_model_artifact(last.model_version_id)
    assert hashlib.sha256(artifact).hexdigest() == last.content_hash
    assert store.pending_outbox() == []


def test_one_episode_gives_one_training(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("idem")
    r = make(store, "idem")
    first = bootstrap(r, feed)
    xb, yb = concept("B", 800, 1)
    start, end, _ = feed.rows(xb, yb)
    alarms = [
        drift_event("idem", first.data_version_id, start, end, drift_id=f"d{i}") for i in range(3)
    ]
    # Two racing workers and a re-delivery of the same alarm.
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(r.handle_drift, [alarms[0], alarms[1]]))
    outcomes.append(r.handle_drift(alarms[0]))
    outcomes.append(r.handle_drift(alarms[2]))
    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["COMPLETE", "DUPLICATE", "DUPLICATE", "DUPLICATE"]
    done = next(o for o in outcomes if o.status == "COMPLETE")
    assert all(o.training_id == done.training_id for o in outcomes)
    episode = f"idem/{first.data_version_id}"
    assert len(store.trainings("idem", episode_key=f"{episode}#1")) == 1
    # Episodes are keyed by the deployment that installed the reference: redeploying the
    # same data (a recurring concept) opens a new episode, which may train again.
    deployment = store.history("idem")[-1].id
    fresh = r.handle_drift(
        drift_event("idem", first.data_version_id, start, end, deployment=deployment)
    )
    assert fresh.status == "COMPLETE" and fresh.training_id != done.training_id
    # Every alarm is recorded and linked to the one training.
    linked = {d.drift_id for d in store.drift_events("idem", training_id=done.training_id)}
    assert linked == {"d0", "d1", "d2"}


def test_too_few_labels_skips_with_a_label_request_then_trains(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("labels")
    pub = InMemoryPublisher()
    r = make(store, "labels", pub, selection={"label_request_size": 20})
    first = bootstrap(r, feed)
    xb, yb = concept("B", 1000, 1)
    start, end, ids = feed.rows(xb, yb, labelled=0.05, seed=3)
    skipped = r.handle_drift(drift_event("labels", first.data_version_id, start, end))
    assert skipped.status == "SKIPPED" and "too few labelled rows" in skipped.reason
    request = skipped.label_request
    assert isinstance(request, LabelRequest) and pub.label_requests == [request]
    assert len(request.event_ids) == 20 and set(request.event_ids) <= set(ids)
    assert request.training_id == skipped.training_id and request.drift_id is not None
    labelled = set(store.archive("labels").read_labels().column("event_id").to_pylist())
    assert not set(request.event_ids) & labelled  # only unlabelled events are requested
    assert store.training(skipped.training_id).status == "SKIPPED"
    assert store.current("labels").id == first.model_version_id

    # Labels arrive; the next alarm of the same episode may now train (SKIPPED freed it),
    # on all rows since the episode's first alarm, not just its own shorter window.
    feed.labels(ids, yb, end)
    again = r.handle_drift(drift_event("labels", first.data_version_id, end, end))
    assert again.status == "COMPLETE" and again.deployed, again.reason
    assert again.metrics["selection"]["since"] == start.isoformat()
    assert again.metrics["selection"]["labelled"] == 1000


class PoisonedMLP(TorchMLP):
    """A torch MLP whose first weight is NaN: its loss diverges on the first batch."""

    def build(self, params: dict[str, Any], n_features: int, classes: Any) -> None:
        super().build(params, n_features, classes)
        assert self._net is not None
        self._net[0].weight.data[0, 0] = float("nan")


def test_failed_or_timed_out_training_keeps_the_champion(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("fail")
    pub = InMemoryPublisher()
    first = bootstrap(make(store, "fail", pub), feed)
    register_adapter("poisoned-mlp", PoisonedMLP)
    xb, yb = concept("B", 800, 1)
    start, end, _ = feed.rows(xb, yb)
    poisoned = make(store, "fail", pub, model={"adapter": "poisoned-mlp", "warm_start": "none"})
    out = poisoned.handle_drift(drift_event("fail", first.data_version_id, start, end))
    assert out.status == "FAILED" and "loss became nan" in out.reason
    assert store.training(out.training_id).status == "FAILED"
    slow = make(store, "fail", pub, model={"timeout_s": 0.001})
    out = slow.handle_drift(drift_event("fail", "dv-other-reference", start, end))
    assert out.status == "FAILED" and "timeout_s" in out.reason
    assert store.current("fail").id == first.model_version_id
    assert len(pub.model_versions) == 1


def test_gate_keeps_a_champion_the_challenger_does_not_beat_and_guard_learns(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("gate")
    pub = InMemoryPublisher()
    r = make(
        store,
        "gate",
        pub,
        gate={"margin": 0.05},
        guard={"min_history": 2, "threshold": 0.5, "bandwidth": 0.3},
    )
    first = bootstrap(r, feed)
    outcomes = []
    for i in range(4):
        # The same concept again: a false alarm, nothing to gain from retraining. Its labels
        # are 20% noise, so the champion errs often enough that the gate *could* be passed.
        x, y = noisy(*concept("A", 600, 10 + i), seed=10 + i)
        start, end, _ = feed.rows(x, y)
        outcomes.append(
            r.handle_drift(drift_event("gate", f"dv-ref{i}", start, end, statistic=1.1))
        )
    kept, second, third, guarded = outcomes
    assert kept.status == "COMPLETE" and not kept.deployed
    assert "not shown better" in kept.reason and kept.model_version_id is not None
    assert kept.metrics["gate"]["champion"] > 0.7
    assert store.model_version(kept.model_version_id)  # registered for the record
    assert third.status == "COMPLETE" and not third.deployed, third.metrics["guard"]
    assert "nearby past runs" in third.metrics["guard"]["reason"]  # too little evidence yet
    assert second.status == "COMPLETE" and not second.deployed
    # Three trainings in this situation never deployed: the guard skips the fourth.
    assert guarded.status == "SKIPPED" and "skipped by the guard" in guarded.reason
    assert guarded.metrics["guard"]["p_deploy"] < 0.5
    assert store.current("gate").id == first.model_version_id
    assert len(pub.model_versions) == 1


def test_tick_triggers_and_deferred_publishing(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("tick")

    class Down(InMemoryPublisher):
        def publish_model_version(self, event: ModelVersionEvent) -> None:
            raise ConnectionError("broker unreachable")

    triggers = [
        {"kind": "data_amount", "rows": 1000},
        {"kind": "performance", "threshold": 0.8, "window": 300},
    ]
    r = make(store, "tick", Down(), triggers=triggers, bootstrap_rows=400)
    x, y = concept("A", 300, 0)
    feed.rows(x, y)
    assert r.tick(feed.clock) == []  # 300 labels < bootstrap_rows
    x, y = concept("A", 1200, 1)
    feed.rows(x, y)
    [first] = r.tick(feed.clock)
    assert first.deployed and "publishing deferred" in first.reason
    assert len(store.pending_outbox()) == 1
    # A working publisher sends what is pending on the next tick.
    pub = InMemoryPublisher()
    r2 = make(store, "tick", pub, triggers=triggers)
    assert r2.tick(feed.clock) == []
    assert [e.model_version_id for e in pub.model_versions] == [first.model_version_id]

    # Labelled B rows: the champion's accuracy drops, the performance trigger fires.
    xb, yb = concept("B", 500, 2)
    feed.rows(xb, yb)
    [perf] = r2.tick(feed.clock)
    assert perf.trigger["kind"] == "performance" and perf.trigger["value"] < 0.8
    assert perf.status == "COMPLETE" and perf.deployed
    # 1000 more rows since that training: the data-amount trigger fires once.
    xb, yb = concept("B", 1000, 3)
    feed.rows(xb, yb)
    [amount] = r2.tick(feed.clock)
    assert amount.trigger["kind"] == "data_amount" and amount.status == "COMPLETE"
    assert r2.tick(feed.clock) == []


@pytest.mark.parametrize("adapter", ["sklearn", "river"])
def test_other_adapters_run_the_same_lifecycle(
    store: LifecycleStore, feed_factory: Callable[[str], Feed], adapter: str
) -> None:
    feed = feed_factory(f"ad-{adapter}")
    pub = InMemoryPublisher()
    r = make(store, f"ad-{adapter}", pub, model={"adapter": adapter, "epochs": 5})
    x, y = concept("A", 800, 0)
    feed.rows(x, y)
    [first] = r.tick(feed.clock)
    assert first.deployed and first.metrics["challenger"]["accuracy"] > 0.6, first.reason
    xb, yb = concept("B", 800, 1)
    start, end, _ = feed.rows(xb, yb)
    out = r.handle_drift(drift_event(f"ad-{adapter}", first.data_version_id, start, end))
    assert out.status == "COMPLETE", out.reason
    assert out.metrics["challenger"]["accuracy"] > out.metrics["champion"]["accuracy"]
    assert pub.model_versions[0].framework == adapter
    assert store.model_version(out.model_version_id).framework == adapter


def test_regression_pipeline_gates_on_mse(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("reg")
    r = make(store, "reg", label={"task": "regression"})
    rng = np.random.default_rng(0)
    w_a, w_b = rng.normal(size=8), rng.normal(size=8)
    x = rng.normal(size=(1200, 8))
    feed.rows(x, x @ w_a)
    [first] = r.tick(feed.clock)
    assert first.deployed and first.metrics["gate"]["metric"] == "mse"
    assert first.metrics["challenger"]["r2"] > 0.9
    xb = rng.normal(size=(1200, 8)) + 2.0
    start, end, _ = feed.rows(xb, xb @ w_b)
    out = r.handle_drift(drift_event("reg", first.data_version_id, start, end))
    assert out.deployed, out.reason
    assert out.metrics["challenger"]["mse"] < out.metrics["champion"]["mse"]
