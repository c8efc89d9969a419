"""`driftline status | lineage | rollback` on a real store and broker."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from driftline.lifecycle_store.records import OutboxMessage
from driftline.retrainer.publisher import flush_outbox
from driftline.schemas import DriftEvent, utcnow
from driftline.streams.admin import deployment_event
from driftline.streams.cli import app
from driftline.streams.kafka.publisher import KafkaPublisher
from driftline.streams.sdk.subscriber import ModelSubscriber

pytestmark = pytest.mark.kafka


def deploy_two(lp: Any) -> tuple[Any, list[str]]:
    """Two model versions deployed one after the other (published through the outbox)."""
    store = lp.open_store()
    pipeline = store.ensure_pipeline(lp.name, list(lp.stream.features), {})
    dv = store.snapshot(pipeline, pa.table({f: [0.0, 1.0] for f in lp.stream.features}))
    ids = []
    parent = None
    for weights in (b"one", b"two"):
        mv = store.register_model(
            pipeline,
            weights,
            framework="bytes",
            params={},
            metrics={"accuracy": 0.5 + len(ids) / 4},
            data_version_id=dv.id,
            parent_model_version_id=parent,
        )
        store.deploy(
            pipeline,
            "champion",
            mv.id,
            reason=f"deploy {weights.decode()}",
            outbox=lambda d, m: _outbox(store, d, m),
        )
        ids.append(mv.id)
        parent = mv.id
    publisher = KafkaPublisher(lp.settings)
    assert flush_outbox(store, publisher) == 2
    publisher.close()
    return store, ids


def _outbox(store: Any, deployment: Any, model: Any) -> OutboxMessage:
    event = deployment_event(store, deployment, model)
    return OutboxMessage(f"{deployment.pipeline}.model-versions", event.key, event.to_json())


def test_rollback_republishes_the_previous_champion_and_history_keeps_both(
    kafka_bootstrap: str, loop_pipeline_factory: Any
) -> None:
    lp = loop_pipeline_factory()
    store, (first, second) = deploy_two(lp)
    runner = CliRunner()
    with ModelSubscriber.from_settings(lp.settings, loader=lambda event, data: data) as sub:
        assert sub.wait(second, timeout=20).model_version_id == second
        result = runner.invoke(app, ["rollback", "--config", str(lp.config_file)])
        assert result.exit_code == 0, result.output
        assert first in result.output
        event = sub.wait(first, timeout=20)
        assert sub.model == b"one"
    assert event.reason == "manual rollback"
    history = store.history(lp.name)
    assert [(d.kind, d.model_version_id) for d in history] == [
        ("deploy", first),
        ("deploy", second),
        ("rollback", first),
    ]
    assert event.deployment_id == history[-1].id
    assert store.pending_outbox() == []
    store.close()


def test_rollback_with_nothing_to_undo_fails_clearly(loop_pipeline_factory: Any) -> None:
    lp = loop_pipeline_factory()
    store = lp.open_store()
    store.ensure_pipeline(lp.name, list(lp.stream.features), {})
    store.close()
    result = CliRunner().invoke(app, ["rollback", "--config", str(lp.config_file)])
    assert result.exit_code == 2
    assert "roll" in result.output.lower()


def test_status_shows_champion_drifts_and_trainings(loop_pipeline_factory: Any) -> None:
    lp = loop_pipeline_factory()
    store, (first, second) = deploy_two(lp)
    now = utcnow()
    drift = DriftEvent(
        drift_id="d-status",
        pipeline=lp.name,
        detector="mmd",
        statistic=2.5,
        threshold=1.0,
        window_start=now,
        window_end=now,
        rows_seen=100,
    )
    store.record_drift(drift)
    training, _ = store.begin_training(
        lp.name,
        episode_key=drift.episode_key,
        trigger={"kind": "drift"},
        config={},
        drift_ids=[drift.drift_id],
    )
    store.update_training(training.id, status="SKIPPED", reason="too few labelled rows")
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--config", str(lp.config_file), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["aliases"]["champion"]["id"] == second
    assert [d["model_version_id"] for d in report["history"]] == [first, second]
    assert report["drift_events"][0]["training_id"] == training.id
    assert report["trainings"][0]["status"] == "SKIPPED"
    assert report["pending_outbox"] == 0
    wide = {"COLUMNS": "250"}  # rich wraps cells at the terminal width
    table = runner.invoke(app, ["status", "--config", str(lp.config_file)], env=wide)
    assert table.exit_code == 0, table.output
    for text in (second, "d-status", "SKIPPED", "too few labelled rows"):
        assert text in table.output


def test_lineage_of_a_model_version(loop_pipeline_factory: Any) -> None:
    lp = loop_pipeline_factory()
    store, (first, second) = deploy_two(lp)
    data_version = store.model_version(second).data_version_id
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["lineage", second, "--config", str(lp.config_file), "--json"])
    assert result.exit_code == 0, result.output
    lineage = json.loads(result.output)
    assert lineage["lifecycle"]["model_version"]["id"] == second
    assert lineage["lifecycle"]["parent_model_version"]["id"] == first
    assert data_version in {n["id"] for n in lineage["upstream"]}
    tree = runner.invoke(
        app, ["lineage", second, "--config", str(lp.config_file)], env={"COLUMNS": "250"}
    )
    assert tree.exit_code == 0 and f"warm-started from {first}" in tree.output
    missing = runner.invoke(app, ["lineage", "mv-nope", "--config", str(lp.config_file)])
    assert missing.exit_code == 2 and "mv-nope" in missing.output
