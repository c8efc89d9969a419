from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from driftline.lifecycle_store import (
    ConcurrentUpdateError,
    Deployment,
    LifecycleStore,
    ModelVersion,
    NotFoundError,
    OutboxMessage,
    StoreError,
)
from driftline.schemas import ModelVersionEvent

Rows = Callable[..., pa.Table]


@pytest.fixture
def models(store: LifecycleStore, pipeline: str, rows: Rows) -> list[str]:
    dv = store.snapshot(pipeline, rows(20))
    return [
        store.register_model(
            pipeline,
            f"m{i}".encode(),
            framework="torch",
            params={},
            metrics={},
            data_version_id=dv.id,
        ).id
        for i in range(4)
    ]


def test_deploy_current_history(store: LifecycleStore, pipeline: str, models: list[str]) -> None:
    assert store.current(pipeline) is None
    d1 = store.deploy(pipeline, "champion", models[0], reason="first")
    d2 = store.deploy(pipeline, "champion", models[1], reason="better", expected_current=models[0])
    store.deploy(pipeline, "challenger", models[2], reason="try")
    assert store.current(pipeline).id == models[1]  # type: ignore[union-attr]
    assert store.current(pipeline, "challenger").id == models[2]  # type: ignore[union-attr]
    assert [d.seq for d in store.history(pipeline)] == [1, 2]
    assert d2.previous_model_version_id == models[0] and d1.previous_model_version_id is None
    assert {a: m.id for a, m in store.aliases(pipeline).items()} == {
        "champion": models[1],
        "challenger": models[2],
    }
    assert [d.alias for d in store.deployments_of(models[1])] == ["champion"]


def test_live_at(store: LifecycleStore, pipeline: str, models: list[str]) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(3):
        store.deploy(
            pipeline, "champion", models[i], reason=f"d{i}", deployed_at=t0 + timedelta(hours=i)
        )
    assert store.live_at(pipeline, "champion", t0 - timedelta(seconds=1)) is None
    live = [
        store.live_at(pipeline, "champion", t0 + timedelta(minutes=m)) for m in (0, 59, 60, 500)
    ]
    assert [m.id for m in live if m] == [models[0], models[0], models[1], models[2]]


def test_rollback_undoes_deployments_in_turn(
    store: LifecycleStore, pipeline: str, models: list[str]
) -> None:
    a, b, c, d = models
    for m in (a, b, c):
        store.deploy(pipeline, "champion", m, reason="deploy")
    r1 = store.rollback(pipeline, reason="c is bad")
    assert r1.model_version_id == b and r1.kind == "rollback" and r1.seq == 4
    assert store.rollback(pipeline, reason="b too").model_version_id == a
    with pytest.raises(StoreError, match="nothing to roll back"):
        store.rollback(pipeline, reason="again")
    store.deploy(pipeline, "champion", d, reason="new")
    assert store.rollback(pipeline, reason="d bad").model_version_id == a
    assert [h.model_version_id for h in store.history(pipeline)] == [a, b, c, b, a, d, a]
    with pytest.raises(StoreError, match="never deployed"):
        store.rollback(pipeline, "other", reason="x")


def test_bad_deploys_change_nothing(
    store: LifecycleStore, pipeline: str, models: list[str]
) -> None:
    store.deploy(pipeline, "champion", models[0], reason="first")
    with pytest.raises(ConcurrentUpdateError, match=models[0]):
        store.deploy(pipeline, "champion", models[1], reason="x", expected_current=None)
    with pytest.raises(NotFoundError, match="mv-nope"):
        store.deploy(pipeline, "champion", "mv-nope", reason="x")
    with pytest.raises(StoreError, match="alias"):
        store.deploy(pipeline, "", models[1], reason="x")
    with pytest.raises(NotFoundError, match="'nope'"):
        store.deploy("nope", "champion", models[1], reason="x")
    assert len(store.history(pipeline)) == 1 and store.pending_outbox() == []


def test_outbox_is_written_with_the_deployment(
    store: LifecycleStore, pipeline: str, models: list[str]
) -> None:
    def event(dep: Deployment, mv: ModelVersion) -> OutboxMessage:
        msg = ModelVersionEvent(
            pipeline=dep.pipeline,
            alias=dep.alias,
            deployment_id=dep.id,
            model_version_id=mv.id,
            artifact_uri=mv.artifact_uri,
            content_hash=mv.content_hash,
            framework=mv.framework,
            feature_names=["f0", "f1", "f2"],
            reason=dep.reason,
        )
        return OutboxMessage(f"{dep.pipeline}.model-versions", msg.key, msg.to_json())

    dep = store.deploy(pipeline, "champion", models[0], reason="first", outbox=event)
    store.deploy(pipeline, "champion", models[1], reason="second", outbox=event)
    rb = store.rollback(pipeline, reason="undo", outbox=event)
    pending = store.pending_outbox()
    assert pending[0].deployment_id == dep.id and len(pending) == 3
    last = ModelVersionEvent.from_json(pending[-1].value)
    assert last.model_version_id == models[0] and last.deployment_id == rb.id
    assert pending[0].key == b"demo/champion"
    assert store.mark_published([p.id for p in pending[:2]]) == 2
    assert store.mark_published([pending[0].id]) == 0
    assert [p.id for p in store.pending_outbox()] == [pending[2].id]

    def broken(dep: Deployment, mv: ModelVersion) -> OutboxMessage:
        raise RuntimeError("cannot build event")

    with pytest.raises(RuntimeError):
        store.deploy(pipeline, "champion", models[3], reason="x", outbox=broken)
    assert store.current(pipeline).id == models[0]  # type: ignore[union-attr]
    assert len(store.history(pipeline)) == 3


@pytest.mark.parametrize("compare_and_set", [True, False])
def test_racing_promotions_leave_one_history(
    open_store: Callable[[], LifecycleStore],
    store: LifecycleStore,
    pipeline: str,
    models: list[str],
    compare_and_set: bool,
) -> None:
    store.deploy(pipeline, "champion", models[0], reason="base")
    writers = [open_store() for _ in range(3)]
    barrier = threading.Barrier(len(writers))
    won: list[str] = []
    lost: list[BaseException] = []

    def promote(i: int) -> None:
        barrier.wait()
        try:
            kwargs = {"expected_current": models[0]} if compare_and_set else {}
            writers[i].deploy(pipeline, "champion", models[i + 1], reason=f"w{i}", **kwargs)
            won.append(models[i + 1])
        except ConcurrentUpdateError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = store.history(pipeline)
    assert [h.seq for h in history] == list(range(1, len(history) + 1))
    for before, after in itertools.pairwise(history):
        assert after.previous_model_version_id == before.model_version_id
    if compare_and_set:
        assert len(won) == 1 and len(lost) == 2
        assert store.current(pipeline).id == won[0]  # type: ignore[union-attr]
    else:
        assert len(won) == 3 and not lost and len(history) == 4
        assert store.current(pipeline).id == history[-1].model_version_id  # type: ignore[union-attr]
