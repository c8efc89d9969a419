"""Label-free reuse of a recurring concept: the calibrated match, the redeployment before any
label, the labelled gate that confirms or replaces it, and no reuse where nothing recurs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.reuse import candidates, match_test
from driftline.retrainer.service import Retrainer
from tests.retrainer.conftest import N_FEATURES, Feed, concept, drift_event
from tests.retrainer.test_episodes import bootstrap, make, with_change


def new_concept(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A concept seen neither as A nor as B: inputs elsewhere, its own rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 4:] -= 2.0
    y = (x[:, 0] - x[:, 5] > 0).astype(np.int64) * 2
    return x, y


def a_then_b(store: LifecycleStore, feed: Feed, r: Retrainer, name: str) -> tuple[Any, Any]:
    """Bootstrap on A, then a labelled change to B that deploys B's model."""
    first = bootstrap(r, feed)
    xb, yb = concept("B", 800, 1)
    start, end, _ = feed.rows(xb, yb)
    to_b = r.handle_drift(with_change(drift_event(name, first.data_version_id, start, end), start))
    assert to_b.deployed, to_b.reason
    return first, to_b


def alarm(store: LifecycleStore, name: str, reference: str, start: Any, end: Any) -> Any:
    """An alarm raised 150 rows (seconds) into the new rows, as a detector would."""
    deployment = store.history(name)[-1].id
    raised = start + timedelta(seconds=150)
    event = drift_event(name, reference, start, raised, deployment=deployment)
    return with_change(event, start)


def test_the_match_is_calibrated_on_the_candidate_itself() -> None:
    rng = np.random.default_rng(3)
    past = rng.normal(size=(1500, 6))
    same = [match_test(rng.normal(size=(150, 6)), past, alpha=0.1, seed=i) for i in range(40)]
    missed = sum(not t.matches for t in same) / len(same)
    assert missed <= 0.2  # a true recurrence is missed at about alpha = 0.1
    shifted = rng.normal(size=(150, 6))
    shifted[:, :3] += 0.6
    test = match_test(shifted, past, alpha=0.1)
    assert not test.matches and test.statistic > test.threshold


def test_a_recurring_concept_redeploys_its_model_before_any_label_and_the_gate_decides(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("again")
    r = make(store, "again", guard={"enabled": False})
    first, to_b = a_then_b(store, feed, r, "again")
    xa, ya = concept("A", 800, 2)
    start, end, ids = feed.rows(xa, ya, labelled=0.0)
    published = len(r.publisher.model_versions)

    reused = r.handle_drift(alarm(store, "again", to_b.data_version_id, start, end))

    assert reused.status == "REUSED" and reused.deployed, reused.reason
    assert reused.model_version_id == first.model_version_id
    assert store.current("again").id == first.model_version_id
    deployment = store.history("again")[-1]
    assert deployment.reason.startswith("reuse:") and deployment.id == reused.event.deployment_id
    assert [e.deployment_id for e in r.publisher.model_versions[published:]] == [deployment.id]
    record = store.training(reused.training_id)
    assert record.status == "SKIPPED" and record.metrics["code"] == "reuse"
    decision = record.metrics["reuse"]
    assert not decision["champion_test"]["matches"]  # the window is not B's data
    assert [t["model_version_id"] for t in decision["tests"]] == [first.model_version_id]

    # The episode stays open: no label yet, so its labelled attempt waits for them ...
    [waiting] = r.tick(end)
    assert waiting.status == "SKIPPED" and waiting.label_request is not None
    # ... and once they arrive the gate trains a challenger against the reused model.
    feed.labels(ids, ya, end)
    [gated] = r.tick(end)
    assert gated.status == "COMPLETE", gated.reason
    assert gated.metrics["champion_model_version_id"] == first.model_version_id
    if not gated.deployed:  # confirmed: the episode is over
        assert r.tick(end) == []
        assert store.current("again").id == first.model_version_id
    # Later alarms of the episode never redeploy again.
    again = r.handle_drift(alarm(store, "again", to_b.data_version_id, start, end))
    assert again.status != "REUSED"


@pytest.mark.parametrize("case", ["new concept", "false alarm"])
def test_no_reuse_where_nothing_recurs(
    store: LifecycleStore, feed_factory: Callable[[str], Feed], case: str
) -> None:
    name = "new" if case == "new concept" else "same"
    feed = feed_factory(name)
    r = make(store, name, guard={"enabled": False})
    _, to_b = a_then_b(store, feed, r, name)
    x, y = new_concept(800, 4) if case == "new concept" else concept("B", 800, 5)
    start, end, _ = feed.rows(x, y, labelled=0.0)

    outcome = r.handle_drift(alarm(store, name, to_b.data_version_id, start, end))

    assert outcome.status == "SKIPPED" and not outcome.deployed, outcome.reason
    assert store.current(name).id == to_b.model_version_id
    [record] = [t for t in store.trainings(name) if t.episode_key.endswith("/reuse")]
    decision = record.metrics["reuse"]
    assert decision["reuse"] is False
    if case == "false alarm":
        assert decision["champion_test"]["matches"], decision["reason"]
    else:
        assert not any(t["matches"] for t in decision["tests"]), decision["reason"]


def test_the_champion_is_never_a_candidate(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("cand")
    r = make(store, "cand")
    first, _ = a_then_b(store, feed, r, "cand")
    champion = store.current("cand")
    assert [m.id for m in candidates(store, "cand", "champion", champion)] == [
        first.model_version_id
    ]


def test_reuse_off_trains_only_on_labels(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("off")
    r = make(store, "off", triggers=[{"kind": "drift", "reuse_alpha": None}])
    _, to_b = a_then_b(store, feed, r, "off")
    xa, ya = concept("A", 800, 2)
    start, end, _ = feed.rows(xa, ya, labelled=0.0)
    outcome = r.handle_drift(alarm(store, "off", to_b.data_version_id, start, end))
    assert outcome.status == "SKIPPED" and store.current("off").id == to_b.model_version_id
