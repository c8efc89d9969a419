from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from driftline.lifecycle_store import LifecycleStore, NotFoundError, StoreError
from driftline.schemas import DriftEvent

Rows = Callable[..., pa.Table]


@pytest.fixture
def graph(store: LifecycleStore, pipeline: str, rows: Rows) -> dict[str, str]:
    """dv1 -> mv1 (champion); dv2 (append of dv1) -> training (drift d1) -> mv2 (warm from mv1)."""
    dv1 = store.snapshot(pipeline, rows(30))
    mv1 = store.register_model(
        pipeline, b"one", framework="torch", params={}, metrics={}, data_version_id=dv1.id
    )
    dep1 = store.deploy(pipeline, "champion", mv1.id, reason="first")
    dv2 = store.snapshot(pipeline, rows(60), parents=[dv1.id], combine="append")
    t = datetime(2024, 1, 2, tzinfo=UTC)
    store.record_drift(
        DriftEvent(
            drift_id="d1",
            pipeline=pipeline,
            detector="mmd",
            statistic=1.0,
            threshold=0.5,
            window_start=t,
            window_end=t,
            rows_seen=10,
        )
    )
    tr, _ = store.begin_training(
        pipeline, episode_key="ep", trigger={"drift_id": "d1"}, config={}, drift_ids=["d1"]
    )
    mv2 = store.register_model(
        pipeline,
        b"two",
        framework="torch",
        params={},
        metrics={},
        data_version_id=dv2.id,
        parent_model_version_id=mv1.id,
        training_id=tr.id,
    )
    store.update_training(tr.id, status="COMPLETE", data_version_id=dv2.id, model_version_id=mv2.id)
    dep2 = store.deploy(pipeline, "champion", mv2.id, reason="drift")
    return {
        "dv1": dv1.id,
        "mv1": mv1.id,
        "dep1": dep1.id,
        "dv2": dv2.id,
        "tr": tr.id,
        "mv2": mv2.id,
        "dep2": dep2.id,
    }


def test_upstream_of_deployment(store: LifecycleStore, graph: dict[str, str]) -> None:
    nodes = store.lineage(graph["dep2"], "upstream", hops=3)
    by_id = {n.id: n for n in nodes}
    assert by_id[graph["mv2"]].distance == 1 and by_id[graph["mv2"]].relation == "deployed_as"
    assert {by_id[graph[k]].distance for k in ("tr", "dv2", "mv1")} == {2}
    assert by_id["d1"].kind == "drift_event" and by_id["d1"].distance == 3
    assert by_id[graph["dv1"]].distance == 3
    assert graph["dep1"] not in by_id
    one_hop = store.lineage(graph["dep2"], "upstream", hops=1)
    assert [n.id for n in one_hop] == [graph["mv2"]]


def test_downstream_of_first_data(store: LifecycleStore, graph: dict[str, str]) -> None:
    nodes = {n.id: n for n in store.lineage(graph["dv1"], "downstream", hops=2)}
    assert nodes[graph["dv2"]].relation == "parent_of" and nodes[graph["dv2"]].distance == 1
    assert nodes[graph["mv1"]].distance == 1
    assert nodes[graph["dep1"]].distance == 2 and nodes[graph["tr"]].distance == 2
    assert nodes[graph["mv2"]].distance == 2  # via warm start from mv1 and via dv2
    assert graph["dep2"] not in nodes
    assert graph["dep2"] in {n.id for n in store.lineage(graph["dv1"], "downstream", hops=3)}
    assert store.lineage(graph["dv1"], "upstream") == []


def test_lifecycle_in_one_call(store: LifecycleStore, graph: dict[str, str]) -> None:
    life = store.lifecycle(graph["mv2"])
    assert life.model_version.id == graph["mv2"]
    assert life.data_version.id == graph["dv2"] and life.data_version.parents == (graph["dv1"],)
    assert life.training is not None and life.training.status == "COMPLETE"
    assert life.parent_model_version is not None and life.parent_model_version.id == graph["mv1"]
    assert [d.id for d in life.deployments] == [graph["dep2"]]
    assert [d.drift_id for d in life.drift_events] == ["d1"]
    first = store.lifecycle(graph["mv1"])
    assert first.training is None and first.parent_model_version is None


def test_bad_lineage_queries(store: LifecycleStore, graph: dict[str, str]) -> None:
    with pytest.raises(NotFoundError, match="mv-nope"):
        store.lineage("mv-nope")
    with pytest.raises(NotFoundError, match="mv-nope"):
        store.lifecycle("mv-nope")
    with pytest.raises(StoreError, match="sideways"):
        store.lineage(graph["dv1"], "sideways")
    with pytest.raises(StoreError, match="hops"):
        store.lineage(graph["dv1"], hops=-1)
