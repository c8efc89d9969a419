from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from driftline.config.settings import Settings
from driftline.schemas import LabelEvent
from driftline.streams.cli import app
from driftline.streams.exceptions import ReplayError
from driftline.streams.kafka.clients import (
    admin_client,
    ensure_topics,
    make_consumer,
    to_raw_message,
)
from driftline.streams.kafka.replay import load_table, replay, split_columns
from driftline.streams.metrics import MonitorMetrics
from driftline.streams.monitor.codec import decode_inputs
from driftline.streams.monitor.step import MonitorOutput


def table(n: int = 50) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "f0": rng.normal(size=n),
            "f1": rng.integers(0, 5, size=n),
            "label": rng.integers(0, 2, size=n),
            "note": ["x"] * n,
        }
    )


def test_load_table_reads_parquet_and_csv_and_finds_features(tmp_path: Path) -> None:
    pq.write_table(table(), tmp_path / "a.parquet")
    pacsv.write_csv(table(), tmp_path / "a.csv")
    for name in ("a.parquet", "a.csv"):
        t = load_table(tmp_path / name)
        assert t.num_rows == 50
        assert split_columns(t, "label") == ["f0", "f1"]
    with pytest.raises(ReplayError, match="does not exist"):
        load_table(tmp_path / "missing.parquet")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ReplayError, match="neither"):
        load_table(tmp_path / "a.txt")


def test_replay_refuses_bad_options(tmp_path: Path) -> None:
    pq.write_table(table(), tmp_path / "a.parquet")
    s = Settings.load(pipeline="p", kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ReplayError, match="format"):
        replay(s, tmp_path / "a.parquet", fmt="xml")
    with pytest.raises(ReplayError, match="--at"):
        replay(s, tmp_path / "a.parquet", inject="shift")
    with pytest.raises(ReplayError, match="label-column"):
        replay(s, tmp_path / "a.parquet", labels_delay=3, label_column="nope")


def read_all(settings: Settings, topic: str, want: int) -> list:
    consumer = make_consumer(settings, f"t-{datetime.now(UTC).timestamp()}")
    consumer.subscribe([topic])
    got: list = []
    for _ in range(200):
        batch = consumer.consume(num_messages=1000, timeout=0.5)
        got.extend(m for m in batch if not m.error())
        if len(got) >= want:
            break
    consumer.close()
    return got


@pytest.mark.kafka
def test_replay_sends_valid_json_arrow_and_delayed_labels(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    pq.write_table(table(), tmp_path / "a.parquet")
    s = Settings.load(pipeline=unique_name("replay"), kafka_bootstrap_servers=kafka_bootstrap)
    created = ensure_topics(s)
    admin = admin_client(s)  # keep the handle alive while its futures resolve
    try:
        assert set(created) == set(s.topics.all())
        config = admin.describe_configs(
            [
                __import__("confluent_kafka.admin", fromlist=["ConfigResource"]).ConfigResource(
                    "topic", s.topics.model_versions
                )
            ]
        )
        (entries,) = [f.result(timeout=30) for f in config.values()]
        assert entries["cleanup.policy"].value == "compact"
        json_report = replay(s, tmp_path / "a.parquet", labels_delay=10, progress=False)
        arrow_report = replay(s, tmp_path / "a.parquet", fmt="arrow", batch_rows=20, progress=False)
        assert (json_report.messages, json_report.labels) == (50, 50)
        assert arrow_report.messages == 3
        inputs = [to_raw_message(m) for m in read_all(s, s.topics.inputs, 53)]
        decoded = decode_inputs(inputs, pipeline=s.pipeline)
        assert decoded.dead_letters == [] and len(decoded.rows) == 100
        assert decoded.rows.feature_names == ("f0", "f1")
        run = json_report.run_id
        assert decoded.rows.event_ids[:2].to_pylist() == [f"{run}-0", f"{run}-1"]
        assert len(set(decoded.rows.event_ids.to_pylist())) == 100  # two runs, no shared id
        labels = [LabelEvent.from_json(m.value()) for m in read_all(s, s.topics.labels, 50)]
        assert sorted(int(e.event_id.rsplit("-", 1)[1]) for e in labels) == list(range(50))
        assert ensure_topics(s) == []
    finally:
        for f in admin.delete_topics(s.topics.all()).values():
            f.result(timeout=30)


def test_metrics_count_a_batch() -> None:
    m = MonitorMetrics("fraud")
    m.observe_batch(MonitorOutput(rows=7, statistic=1.5, threshold=3.0), [], 0.01)
    m.observe_batch(MonitorOutput(rows=3, suppressed_alarms=2), [], 0.01)
    text = m.exposition().decode()
    assert 'driftline_events_total{pipeline="fraud"} 10.0' in text
    assert 'driftline_batches_total{pipeline="fraud"} 2.0' in text
    assert 'driftline_alarms_suppressed_total{pipeline="fraud"} 2.0' in text
    assert 'driftline_detector_statistic{pipeline="fraud"} 1.5' in text


def test_cli_lists_worker_and_replay_and_reports_bad_config(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert "worker" in result.output and "replay" in result.output
    bad = runner.invoke(app, ["worker", "--config", str(tmp_path / "none.toml")])
    assert bad.exit_code == 2 and "Error" in bad.output  # a usage error, not a traceback
    assert bad.exception is None or isinstance(bad.exception, SystemExit)
