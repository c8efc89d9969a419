from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pyarrow as pa

from driftline.config.pipeline import PipelineConfig, SelectionConfig
from driftline.retrainer.publisher import InMemoryPublisher
from driftline.retrainer.selection import informative_event_ids, nearest_rows, select_training_data
from driftline.retrainer.service import Retrainer
from driftline.schemas import EventVerifier
from driftline.streams.loops.retrainer import RetrainerLoop
from tests.retrainer.conftest import FEATURES, Feed, concept


def test_new_all_uniform_and_coreset(store, feed_factory: Callable[[str], Feed]) -> None:  # type: ignore[no-untyped-def]
    feed = feed_factory("sel")
    xa, ya = concept("A", 800, 0)
    feed.rows(xa, ya, labelled=0.5, seed=1)
    xb, yb = concept("B", 400, 1)
    since, _, new_ids = feed.rows(xb, yb, labelled=0.5, seed=2)
    archive = store.archive("sel")

    new = select_training_data(archive, FEATURES, SelectionConfig(strategy="new"), since=since)
    assert new.rows_considered == 400
    assert set(new.table.column("event_id").to_pylist()) <= set(new_ids)
    assert new.is_new.all() and 150 < new.labelled < 250
    assert len(new.unlabelled) == 400 - new.labelled
    assert new.table.column("label").type == pa.int64()
    # Labels joined by event id: each row keeps its own label.
    by_id = dict(zip(new_ids, yb.tolist(), strict=True))
    got = new.table.to_pydict()
    assert all(by_id[e] == lab for e, lab in zip(got["event_id"], got["label"], strict=True))

    everything = select_training_data(
        archive, FEATURES, SelectionConfig(strategy="all"), since=since
    )
    assert everything.rows_considered == 1200 and 500 < everything.labelled < 700
    assert everything.is_new.sum() == new.labelled

    uniform = select_training_data(
        archive, FEATURES, SelectionConfig(strategy="uniform", sample_rows=100), since=since
    )
    assert uniform.labelled == 100 and 0 < uniform.is_new.sum() < 100

    core = select_training_data(
        archive, FEATURES, SelectionConfig(strategy="coreset", history_coreset_k=32), since=since
    )
    # All labelled new rows plus one history row per core point.
    assert core.is_new.sum() == new.labelled and (~core.is_new).sum() == 32
    ts = core.table.column("timestamp").to_pylist()
    assert ts == sorted(ts)
    assert core.describe()["labelled_new"] == new.labelled


def test_float_class_labels_become_ints(store, feed_factory: Callable[[str], Feed]) -> None:  # type: ignore[no-untyped-def]
    feed = feed_factory("floats")
    x, y = concept("A", 50, 0)
    _, end, ids = feed.rows(x, None)
    store.archive("floats").append_labels(
        pa.table(
            {
                "event_id": ids,
                "label": y.astype(float),
                "timestamp": pa.array([end] * 50, pa.timestamp("us", tz="UTC")),
            }
        )
    )
    sel = select_training_data(store.archive("floats"), FEATURES, SelectionConfig(), since=None)
    assert sel.table.column("label").type == pa.int64()
    reg = select_training_data(
        store.archive("floats"), FEATURES, SelectionConfig(), since=None, task="regression"
    )
    assert reg.table.column("label").type == pa.float64()
    late = select_training_data(
        store.archive("floats"), FEATURES, SelectionConfig(), since=end + timedelta(seconds=1)
    )
    assert late.labelled == 0 and late.rows_considered == 0


def test_conflicting_duplicates_are_left_out_and_counted(
    store, feed_factory: Callable[[str], Feed]
) -> None:  # type: ignore[no-untyped-def]
    feed = feed_factory("dup")
    xa, ya = concept("A", 600, 0)
    feed.rows(xa, ya)
    # A second file replayed with the same ids: other rows, other labels, under e0..e99.
    feed.offset = 0
    xb, yb = concept("B", 100, 1)
    feed.rows(xb, yb)
    sel = select_training_data(
        store.archive("dup"), FEATURES, SelectionConfig(strategy="all"), since=None
    )
    ids = set(sel.table.column("event_id").to_pylist())
    assert len(sel.conflicting) == 100 and not ids & set(sel.conflicting)
    assert ids == {f"e{i}" for i in range(100, 600)}
    assert sel.describe()["conflicting_duplicates"] == 100
    # The trainer leaves them out and says so in the training record.
    config = PipelineConfig(name="dup", feature_names=FEATURES, bootstrap_rows=300)
    publisher = InMemoryPublisher()
    loop = RetrainerLoop(
        Retrainer(store, config, publisher),
        store,
        publisher,
        "dup",
        send_dead_letter=lambda letter: None,
        verifier=EventVerifier([]),  # only ticks here, no drift records
    )
    [outcome] = loop.tick(feed.clock)
    assert loop.stats.conflicting_duplicates == 100  # the service's status field
    record = store.training(outcome.training_id)
    assert record.metrics["selection"]["conflicting_duplicates"] == 100
    assert "100 events left out" in record.reason
    table = store.read_data_version(outcome.data_version_id)
    assert min(int(e[1:]) for e in table.column("event_id").to_pylist()) >= 100


def test_informative_ids_cover_the_window() -> None:
    rng = np.random.default_rng(0)
    # Three clusters, one tiny and far away: a uniform sample of 3 would likely miss it.
    x = np.concatenate(
        [rng.normal(0, 0.1, (500, 2)), rng.normal(5, 0.1, (500, 2)), rng.normal(50, 0.1, (3, 2))]
    )
    ids = [f"e{i}" for i in range(len(x))]
    table = pa.table({"event_id": ids, "a": x[:, 0], "b": x[:, 1]})
    picked = informative_event_ids(table, ["a", "b"], 3)
    assert len(picked) == len(set(picked)) == 3
    clusters = {0 if i < 500 else 1 if i < 1000 else 2 for i in (int(p[1:]) for p in picked)}
    assert clusters == {0, 1, 2}
    assert informative_event_ids(table.slice(0, 2), ["a", "b"], 5) == ["e0", "e1"]
    assert informative_event_ids(table.slice(0, 0), ["a", "b"], 5) == []


def test_nearest_rows_are_distinct() -> None:
    x = np.array([[0.0], [1.0], [2.0]])
    assert nearest_rows(np.array([[0.9], [1.1], [1.0]]), x).tolist() == [1, 2, 0]
