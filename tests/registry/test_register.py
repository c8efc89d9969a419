"""``driftline schemas register`` against a real registry: idempotent, and the registered
schemas are the shipped ones, usable by a producer whose events the monitor then decodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

from driftline.schemas import Topics, load_json_schema
from driftline.streams.kafka.schema_registry import register_schemas, subjects
from driftline.streams.monitor.codec import decode_inputs
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import RegistryDecoder

CLI = [sys.executable, "-c", "from driftline.streams.cli import main; main()"]


def test_register_is_idempotent_and_round_trips(client, registry_settings) -> None:
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topics = Topics(f"reg-{uuid.uuid4().hex[:8]}")
    first = register_schemas(registry_settings, topics)
    again = register_schemas(registry_settings, topics)
    assert [(r.subject, r.schema_id, r.version) for r in first] == [
        (r.subject, r.schema_id, r.version) for r in again
    ]
    assert {r.subject for r in first} == {s.subject for s in subjects(topics)}
    for r in first:
        latest = client.get_latest_version(r.subject)
        assert latest.version == 1 and latest.schema_id == r.schema_id
        assert latest.schema.schema_type == "JSON"
        assert json.loads(latest.schema.schema_str) == load_json_schema(r.schema_name)

    # A producer that uses the registered contract (no auto-registration) → the monitor.
    ser = JSONSerializer(
        None, client, conf={"auto.register.schemas": False, "use.latest.version": True}
    )
    doc: dict[str, Any] = {
        "event_id": "r1",
        "timestamp": "2026-01-01T00:00:00Z",
        "pipeline": topics.pipeline,
        "features": {"a": 1.5},
    }
    value = ser(doc, SerializationContext(topics.inputs, MessageField.VALUE))
    assert int.from_bytes(value[1:5], "big") == first[0].schema_id
    out = decode_inputs(
        [RawMessage(value, topic=topics.inputs, offset=0)],
        pipeline=topics.pipeline,
        registry=RegistryDecoder(registry_settings),
    )
    assert out.dead_letters == [] and out.rows.event_ids.to_pylist() == ["r1"]


def test_the_command_prints_one_line_per_subject_and_fails_in_one_line(registry_url) -> None:
    pipeline = f"cli-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    ok = subprocess.run(
        [*CLI, "schemas", "register", "--pipeline", pipeline],
        env={**env, "DRIFTLINE_SCHEMA_REGISTRY__URL": registry_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        s.subject for s in subjects(Topics(pipeline))
    ]
    missing = subprocess.run(
        [*CLI, "schemas", "register", "--pipeline", pipeline],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert "DRIFTLINE_SCHEMA_REGISTRY__URL" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_replay_in_the_wire_format_round_trips_through_the_monitor_codec(
    kafka_bootstrap, registry_url, registry_settings, tmp_path, unique_name
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftline.config.settings import Settings
    from driftline.streams.kafka.clients import admin_client, ensure_topics, to_raw_message
    from driftline.streams.kafka.replay import replay
    from driftline.streams.monitor.codec import decode_labels
    from tests.streams.ingest.test_replay_and_io import read_all

    rng = np.random.default_rng(1)
    n = 40
    pq.write_table(
        pa.table(
            {"a": rng.normal(size=n), "b": rng.normal(size=n), "label": rng.integers(0, 2, n)}
        ),
        tmp_path / "rows.parquet",
    )
    s = Settings.load(
        pipeline=unique_name("replay-wire"),
        kafka_bootstrap_servers=kafka_bootstrap,
        schema_registry={"url": registry_url},
    )
    ensure_topics(s)
    try:
        report = replay(
            s, tmp_path / "rows.parquet", fmt="registry-json", labels_delay=0, progress=False
        )
        assert (report.messages, report.labels) == (n, n)
        inputs = [to_raw_message(m) for m in read_all(s, s.topics.inputs, n)]
        assert all(m.value[0] == 0 and not m.headers for m in inputs)
        decoder = RegistryDecoder(registry_settings)
        out = decode_inputs(inputs, pipeline=s.pipeline, registry=decoder)
        assert out.dead_letters == [] and len(out.rows) == n
        labels = [to_raw_message(m) for m in read_all(s, s.topics.labels, n)]
        table = decode_labels(labels, pipeline=s.pipeline, registry=decoder).table
        assert table is not None and table.num_rows == n
    finally:
        admin = admin_client(s)
        for f in admin.delete_topics(s.topics.all()).values():
            f.result(timeout=30)
