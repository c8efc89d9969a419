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
