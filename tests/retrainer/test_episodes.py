"""Drift episodes: post-change labels, retries after a losing challenger, deferred cooldowns,
and a bootstrap model trained on a defined set of rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.publisher import InMemoryPublisher
from driftline.retrainer.service import Retrainer
from driftline.schemas import ChangePoint, DriftEvent
from tests.retrainer.conftest import FEATURES, T0, Feed, concept, drift_event, noisy


def make(store: LifecycleStore, name: str, **overrides: Any) -> Retrainer:
    config = PipelineConfig.from_dict({"name": name, "feature_names": FEATURES, **overrides})
    return Retrainer(store, config, InMemoryPublisher())


def bootstrap(r: Retrainer, feed: Feed) -> Any:
    x, y = concept("A", 1500, 0)
    feed.rows(x, y)
    [outcome] = r.tick(feed.clock)
    assert outcome.deployed, outcome.reason
    return outcome


def with_change(event: DriftEvent, at: Any) -> DriftEvent:
    cp = ChangePoint(
        topic="t", partition=0, offset=0, timestamp=at, rows_before_alarm=0, confident=True
    )
    return event.model_copy(update={"change_points": [cp]})


def test_bootstrap_trains_on_exactly_the_first_bootstrap_rows(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("boot")
    r = make(store, "boot", bootstrap_rows=400)
    x, y = concept("A", 1500, 0)
    feed.rows(x, y)  # far more labels than bootstrap_rows are there when it first looks
    [outcome] = r.tick(feed.clock)
    assert outcome.metrics["selection"]["labelled"] == 400
    table = store.read_data_version(outcome.data_version_id)
    assert sorted(table.column("event_id").to_pylist()) == sorted(f"e{i}" for i in range(400))


def test_only_post_change_labels_count_and_the_episode_retries_as_they_arrive(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("post")
    r = make(store, "post", selection={"strategy": "all", "min_labelled_rows": 200})
    first = bootstrap(r, feed)
    xa, ya = concept("A", 600, 5)
    feed.rows(xa, ya)  # more pre-change labels than min_labelled_rows
    xb, yb = concept("B", 800, 1)
    change, end, ids = feed.rows(xb, yb, labelled=0.0)
    event = with_change(drift_event("post", first.data_version_id, change, end), change)
    waiting = r.handle_drift(event)
    assert waiting.status == "SKIPPED" and "after the change point: 0" in waiting.reason
    assert waiting.label_request is not None
    assert r.tick(end) == []  # nothing new: no training, no new attempt
    feed.labels(ids, yb, end)
    [trained] = r.tick(end)  # the library retries the episode itself
    assert trained.status == "COMPLETE" and trained.deployed, trained.reason
    sel = trained.metrics["selection"]
    assert sel["labelled_new"] == 800 and sel["since"] == change.isoformat()
    gate = store.training(trained.training_id).metrics["gate"]
    assert gate["test"] == "mcnemar-exact" and gate["p_value"] < 0.1


def test_a_losing_challenger_retries_with_more_labels_up_to_max_attempts(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("lose")
    r = make(
        store,
        "lose",
        triggers=[{"kind": "drift", "max_attempts": 2, "retry_growth": 2.0}],
        selection={"min_labelled_rows": 200},
        guard={"enabled": False},
    )
    first = bootstrap(r, feed)
    # A false alarm on rows whose labels are 20% noise: the champion errs often enough that a
    # challenger *could* pass the gate, but none is better than it.
    x, y = noisy(*concept("A", 300, 7), seed=7)
    start, end, _ = feed.rows(x, y)
    event = with_change(drift_event("lose", first.data_version_id, start, end), start)
    lost = r.handle_drift(event)
    assert lost.status == "COMPLETE" and not lost.deployed, lost.reason
    assert r.tick(end) == []  # labels have not grown yet
    x, y = noisy(*concept("A", 350, 8), seed=8)
    _, end, _ = feed.rows(x, y)
    [again] = r.tick(end)
    assert again.status == "COMPLETE" and again.trigger["attempt"] == 2
    x, y = noisy(*concept("A", 900, 9), seed=9)
    _, end, _ = feed.rows(x, y)
    assert r.tick(end) == []  # max_attempts used: the champion stays
    done = r.handle_drift(event)
    assert done.status == "DUPLICATE" and "max_attempts=2" in done.reason
    assert store.current("lose").id == first.model_version_id


def test_no_challenger_is_trained_against_a_champion_it_cannot_beat(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("sure")
    r = make(
        store,
        "sure",
        triggers=[{"kind": "drift", "max_attempts": 1, "reuse_alpha": None}],
        selection={"min_labelled_rows": 200},
        guard={"enabled": False},
    )
    first = bootstrap(r, feed)
    x, y = concept("A", 300, 7)  # a false alarm on clean labels: the champion is ~always right
    start, end, _ = feed.rows(x, y)
    event = with_change(drift_event("sure", first.data_version_id, start, end), start)
    skipped = r.handle_drift(event)
    assert skipped.status == "SKIPPED" and skipped.model_version_id is None, skipped.reason
    record = store.training(skipped.training_id)
    bound = record.metrics["gate_bound"]
    assert record.metrics["code"] == "unbeatable" and not bound["possible"]
    assert bound["champion_errors"] < bound["wins_needed"] == 4  # confidence 0.9: 0.5**4 < 0.1
    assert r.tick(end) == []  # nothing changed: not even the check runs again
    # Many more labels: the holdout could now hold enough errors, so the episode is tried
    # again; the skip was no attempt, so max_attempts=1 still allows this one training.
    x, y = concept("A", 1200, 8)
    _, end, _ = feed.rows(x, y)
    [again] = r.tick(end)
    assert again.trigger["attempt"] == 2
    if again.status == "COMPLETE":  # trained only because the champion erred often enough
        gate = again.metrics["gate"]
        assert round((1 - gate["champion"]) * gate["holdout_rows"]) >= 4, gate
    else:
        assert "no challenger can pass" in again.reason


def test_cooldown_defers_an_episode_and_tick_trains_it_later(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("cool")
    # Without label-free reuse, which would answer the return of A before any training.
    r = make(store, "cool", triggers=[{"kind": "drift", "cooldown_s": 3600, "reuse_alpha": None}])
    first = bootstrap(r, feed)
    xb, yb = concept("B", 800, 1)
    start, end, _ = feed.rows(xb, yb)
    # Right after the bootstrap model: the cooldown counts from drift trainings only.
    to_b = r.handle_drift(
        with_change(drift_event("cool", first.data_version_id, start, end), start)
    )
    assert to_b.deployed, to_b.reason
    xa, ya = concept("A", 800, 2)
    start, end, _ = feed.rows(xa, ya)
    deployment = store.history("cool")[-1].id
    back = with_change(
        drift_event("cool", to_b.data_version_id, start, end, deployment=deployment), start
    )
    deferred = r.handle_drift(back)
    assert deferred.status == "SKIPPED" and "cooldown" in deferred.reason
    assert r.tick(end + timedelta(seconds=1)) == []  # still cooling: no new attempt
    trainings = len(store.trainings("cool"))
    [trained] = r.tick(end + timedelta(seconds=4000))
    assert trained.status == "COMPLETE" and trained.deployed, trained.reason
    assert len(store.trainings("cool")) == trainings + 1
    assert np.isclose(trained.metrics["selection"]["labelled_new"], 800)


def test_the_change_point_is_re_estimated_on_the_rows_archived_since_the_reference(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("late")
    r = make(store, "late", triggers=[{"kind": "drift", "reuse_alpha": None}])
    first = bootstrap(r, feed)
    xa, ya = concept("A", 600, 5)
    early, _, _ = feed.rows(xa, ya)
    xb, yb = concept("B", 800, 1)
    change, end, _ = feed.rows(xb, yb)
    # The alarm placed the change 600 rows early (an estimate made a few rows after a change
    # cannot place it); its window reaches back to the reference's installation.
    event = with_change(drift_event("late", first.data_version_id, T0, end), early)
    trained = r.handle_drift(event)
    cp = trained.trigger["change_point"]
    assert cp["source"] == "refined" and cp["confident"], cp
    assert abs((datetime.fromisoformat(cp["at"]) - change).total_seconds()) <= 10, cp  # 1 row/s
    assert trained.status == "COMPLETE" and trained.deployed, trained.reason
    assert trained.metrics["selection"]["labelled_new"] <= 810  # B's rows, not A's


def many_classes(n: int, seed: int, *, new: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Ten well-separated classes: easy to learn, but more than a linear model can fit from a
    few rows ((8 features + 1) x 10 classes = 90 parameters). ``new``: other class centres."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99 if new else 98).normal(size=(10, len(FEATURES)))
    y = rng.integers(0, 10, size=n)
    return centres[y] + 0.5 * rng.normal(size=(n, len(FEATURES))), y


def bootstrap_ten(r: Retrainer, feed: Feed) -> Any:
    feed.rows(*many_classes(1500, 0, new=False))
    [outcome] = r.tick(feed.clock)
    assert outcome.deployed, outcome.reason
    return outcome


def test_a_deployment_fitted_on_too_few_rows_is_refined_once(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("refine")
    r = make(
        store,
        "refine",
        triggers=[{"kind": "drift", "reuse_alpha": None, "retry_growth": 2.0}],
        selection={"min_labelled_rows": 60},
        gate={"min_holdout_rows": 10},
        guard={"enabled": False},
    )
    first = bootstrap_ten(r, feed)
    x, y = many_classes(1000, 1)
    start, end, ids = feed.rows(x, y, labelled=0.0)
    feed.labels(ids[:60], y[:60], end)
    event = with_change(drift_event("refine", first.data_version_id, T0, end), start)
    starved = r.handle_drift(event)
    assert starved.deployed, starved.reason
    assert store.training(starved.training_id).resources["train_rows"] < 90
    # Still the episode's: it waits for the labels a refinement needs, trains nothing yet.
    feed.labels(ids[60:100], y[60:100], end)
    assert r.tick(end) == []
    # (90 parameters / 0.8 of the labels fitted) -> 113 post-change labels, and 2 x 60.
    feed.labels(ids[100:130], y[100:130], end)
    [refined] = r.tick(end)
    assert refined.status == "COMPLETE", refined.reason
    assert refined.trigger["refine"] == {"after": starved.training_id, "target_labelled_new": 120}
    sel = refined.metrics["selection"]
    assert sel["since"] == store.training(starved.training_id).metrics["selection"]["since"]
    assert sel["labelled_new"] == 130
    # Once per episode, whatever the gate said.
    feed.labels(ids[130:900], y[130:900], end)
    assert r.tick(end) == []
    again = r.handle_drift(event)
    assert again.status == "DUPLICATE", again.reason


def test_no_refinement_when_the_deployment_had_enough_rows_or_it_is_off(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    for name, labelled, refine in (("enough", 400, True), ("off", 70, False)):
        feed = feed_factory(name)
        r = make(
            store,
            name,
            triggers=[{"kind": "drift", "reuse_alpha": None, "refine": refine}],
            selection={"min_labelled_rows": 60},
            gate={"min_holdout_rows": 10},
            guard={"enabled": False},
        )
        first = bootstrap_ten(r, feed)
        x, y = many_classes(1000, 2)
        start, end, ids = feed.rows(x, y, labelled=0.0)
        feed.labels(ids[:labelled], y[:labelled], end)
        event = with_change(drift_event(name, first.data_version_id, T0, end), start)
        assert r.handle_drift(event).deployed
        feed.labels(ids[labelled:], y[labelled:], end)
        assert r.tick(end) == [], name
        assert "deployed model" in r.handle_drift(event).reason
