"""A row stamped far in the future must not stall drift retraining.

On main one row stamped ``9998-12-31`` in a drift window became the alarm's ``window_end``,
which the retrainer recorded as the training's time; every later cooldown then counted from
year 9998 and drift retraining stayed deferred for good.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import utcnow
from tests.retrainer.conftest import Feed, concept, drift_event
from tests.retrainer.test_episodes import bootstrap, make, with_change

FUTURE = datetime(9998, 12, 31, tzinfo=UTC)


def test_a_future_window_end_does_not_defer_later_cooldowns(
    store: LifecycleStore, feed_factory: Callable[[str], Feed]
) -> None:
    feed = feed_factory("future")
    r = make(store, "future", triggers=[{"kind": "drift", "cooldown_s": 3600}])
    first = bootstrap(r, feed)
    xb, yb = concept("B", 800, 1)
    start, _, _ = feed.rows(xb, yb)
    hostile = with_change(drift_event("future", first.data_version_id, start, FUTURE), start)
    to_b = r.handle_drift(hostile)
    assert to_b.deployed, to_b.reason
    recorded = datetime.fromisoformat(store.training(to_b.training_id).trigger["at"])
    assert recorded <= utcnow()  # the retrainer's clock, not year 9998

    xa, ya = concept("A", 800, 2)
    start, end, _ = feed.rows(xa, ya)
    back = with_change(
        drift_event(
            "future", to_b.data_version_id, start, end, deployment=store.history("future")[-1].id
        ),
        start,
    )
    deferred = r.handle_drift(back)
    assert deferred.status == "SKIPPED" and "cooldown" in deferred.reason
    # An hour and a bit later by the retrainer's own clock the cooldown is over.
    [trained] = r.tick(utcnow() + timedelta(seconds=4000))
    assert trained.status == "COMPLETE" and trained.deployed, trained.reason
