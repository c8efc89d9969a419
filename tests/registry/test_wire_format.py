"""Inputs and labels in the Confluent wire format, decoded against a real registry.

Producers' bytes are made by confluent-kafka's own serializers (AvroSerializer,
JSONSerializer), which register their schemas at the registry like any producer would.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from driftline.config.settings import SchemaRegistry
from driftline.schemas import load_json_schema
from driftline.streams.monitor.codec import decode_inputs, decode_labels
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import (
    MAX_MISSES_PER_FETCH,
    RegistryDecoder,
    RegistryUnavailable,
)
from tests.streams.ingest.conftest import free_port

P = "wire"
NAMES = ["x", "y"]

EVENT_AVRO = {
    "type": "record",
    "name": "InferenceEvent",
    "namespace": "producer.test",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "timestamp", "type": "string"},
        {"name": "pipeline", "type": "string"},
        {"name": "features", "type": {"type": "map", "values": "double"}},
        {"name": "model_version", "type": ["null", "string"], "default": None},
    ],
}
# The same with an Avro timestamp (logical type) instead of RFC 3339 text.
EVENT_AVRO_MICROS = {
    **EVENT_AVRO,
    "name": "InferenceEventMicros",
    "fields": [
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-micros"}}
        if f["name"] == "timestamp"
        else f
        for f in EVENT_AVRO["fields"]
    ],
}
LABEL_AVRO = {
    "type": "record",
    "name": "LabelEvent",
    "namespace": "producer.test",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "label", "type": "long"},
        {"name": "timestamp", "type": "string"},
        {"name": "pipeline", "type": ["null", "string"], "default": None},
    ],
}


def topic(kind: str) -> str:
    return f"{P}-{uuid.uuid4().hex[:8]}.{kind}"


def event(i: int, **over: Any) -> dict[str, Any]:
    doc = {
        "event_id": f"e{i}",
        "timestamp": "2026-01-01T00:00:00Z",
        "pipeline": P,
        "features": {"x": float(i), "y": 2.0 * i},
        "model_version": None,
    }
    return {**doc, **over}


def avro_bytes(client: Any, schema: dict[str, Any], docs: list[dict[str, Any]], tp: str) -> list:
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ser = AvroSerializer(client, json.dumps(schema))
    ctx = SerializationContext(tp, MessageField.VALUE)
    return [ser(d, ctx) for d in docs]


def json_bytes(client: Any, schema: dict[str, Any], docs: list[dict[str, Any]], tp: str) -> list:
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ser = JSONSerializer(json.dumps(schema), client)
    ctx = SerializationContext(tp, MessageField.VALUE)
    return [ser(d, ctx) for d in docs]


def raw(values: list[bytes], tp: str, headers: list | None = None) -> list[RawMessage]:
    return [
        RawMessage(v, topic=tp, offset=i, headers=list(headers or [])) for i, v in enumerate(values)
    ]


def test_avro_inputs_decode_to_the_rows_of_the_same_json_events(client, registry_settings) -> None:
    tp = topic("inputs")
    values = avro_bytes(client, EVENT_AVRO, [event(i) for i in range(50)], tp)
    assert all(v[0] == 0 for v in values)
    out = decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(registry_settings))
    assert out.dead_letters == []
    assert out.rows.event_ids.to_pylist() == [f"e{i}" for i in range(50)]
    assert out.rows.features.tolist() == [[float(i), 2.0 * i] for i in range(50)]
    plain = decode_inputs(
        [RawMessage(json.dumps(event(i)).encode(), topic=tp, offset=i) for i in range(50)],
        pipeline=P,
    )
    assert out.rows.to_table().equals(plain.rows.to_table())


def test_avro_timestamps_of_a_logical_type_are_read_as_utc(client, registry_settings) -> None:
    tp = topic("inputs")
    when = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    values = avro_bytes(client, EVENT_AVRO_MICROS, [event(1, timestamp=when)], tp)
    out = decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(registry_settings))
    assert out.dead_letters == []
    stamp = out.rows.to_table().column("timestamp")[0].as_py()
    assert stamp == when


def test_json_schema_inputs_with_the_published_contract_decode(client, registry_settings) -> None:
    tp = topic("inputs")
    schema = load_json_schema("inference_event")
    docs = [{k: v for k, v in event(i).items() if v is not None} for i in range(20)]
    values = json_bytes(client, schema, docs, tp)
    out = decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(registry_settings))
    assert out.dead_letters == []
    assert out.rows.event_ids.to_pylist() == [f"e{i}" for i in range(20)]


def test_mixed_fetch_keeps_arrival_order_and_isolates_bad_messages(
    client, registry_settings
) -> None:
    tp = topic("inputs")
    good = avro_bytes(client, EVENT_AVRO, [event(0), event(2)], tp)
    bad_contract = avro_bytes(client, EVENT_AVRO, [event(9, pipeline="other")], tp)[0]
    nan = avro_bytes(client, EVENT_AVRO, [event(8, features={"x": math.nan, "y": 1.0})], tp)[0]
    truncated = good[0][:7]
    values = [good[0], json.dumps(event(1)).encode(), bad_contract, nan, truncated, good[1]]
    out = decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(registry_settings))
    assert out.rows.event_ids.to_pylist() == ["e0", "e1", "e2"]
    reasons = {d.source_offset: d.reason.value for d in out.dead_letters}
    assert reasons == {2: "wrong_pipeline", 3: "non_finite", 4: "malformed"}
    assert all(d.payload == values[d.source_offset] for d in out.dead_letters)


def test_content_that_breaks_the_input_contract_is_a_schema_violation(
    client, registry_settings
) -> None:
    tp = topic("inputs")
    # Valid for the producer's schema, not for driftline's contract: an empty event id and
    # a field the contract does not have.
    loose = {
        "type": "record",
        "name": "Loose",
        "fields": [
            *EVENT_AVRO["fields"],
            {"name": "extra", "type": "int", "default": 0},
        ],
    }
    values = avro_bytes(client, loose, [event(1, extra=3), event(2, event_id="", extra=0)], tp)
    out = decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(registry_settings))
    assert len(out.rows) == 0
    assert [d.reason.value for d in out.dead_letters] == ["schema_violation"] * 2
    assert "extra" in out.dead_letters[0].detail
    assert "event_id" in out.dead_letters[1].detail


def test_unknown_schema_id_is_a_dead_letter_with_its_reason(client, registry_settings) -> None:
    tp = topic("inputs")
    good = avro_bytes(client, EVENT_AVRO, [event(1)], tp)[0]
    unknown = b"\x00" + (2**31 - 7).to_bytes(4, "big") + good[5:]
    out = decode_inputs(
        raw([unknown, good], tp), pipeline=P, registry=RegistryDecoder(registry_settings)
    )
    assert out.rows.event_ids.to_pylist() == ["e1"]
    (dead,) = out.dead_letters
    assert dead.reason.value == "unknown_schema"
    assert str(2**31 - 7) in dead.detail and "not registered" in dead.detail
    assert dead.payload == unknown


def test_without_a_registry_wire_format_messages_say_how_to_configure_one(client) -> None:
    tp = topic("inputs")
    values = avro_bytes(client, EVENT_AVRO, [event(1)], tp)
    (dead,) = decode_inputs(raw(values, tp), pipeline=P).dead_letters
    assert dead.reason.value == "unknown_schema"
    assert "DRIFTLINE_SCHEMA_REGISTRY__URL" in dead.detail


def test_registry_is_asked_once_per_schema_id_not_per_message(
    client, registry_settings, counting_client
) -> None:
    tp = topic("inputs")
    a = avro_bytes(client, EVENT_AVRO, [event(i) for i in range(300)], tp)
    now = datetime.now(UTC)
    b = avro_bytes(client, EVENT_AVRO_MICROS, [event(i, timestamp=now) for i in range(300)], tp)
    counting = counting_client()
    decoder = RegistryDecoder(registry_settings, client=counting.client)
    out = decode_inputs(raw(a + b, tp), pipeline=P, registry=decoder)
    assert len(out.rows) == 600 and not out.dead_letters
    assert len(counting.calls) == 2, counting.calls
    assert all(c.startswith("GET schemas/ids/") for c in counting.calls)
    decode_inputs(raw(a + b, tp), pipeline=P, registry=decoder)
    assert len(counting.calls) == 2, "the second fetch asks nothing"


def test_made_up_ids_cost_bounded_requests(registry_settings, counting_client) -> None:
    tp = topic("inputs")
    values = [b"\x00" + (10**9 + i).to_bytes(4, "big") + b"\x02" for i in range(200)]
    counting = counting_client()
    decoder = RegistryDecoder(registry_settings, client=counting.client)
    out = decode_inputs(raw(values * 2, tp), pipeline=P, registry=decoder)
    assert [d.reason.value for d in out.dead_letters] == ["unknown_schema"] * 400
    assert len(counting.calls) == MAX_MISSES_PER_FETCH
    decode_inputs(raw(values[:MAX_MISSES_PER_FETCH], tp), pipeline=P, registry=decoder)
    assert len(counting.calls) == MAX_MISSES_PER_FETCH, "404s are remembered"


def test_the_registry_address_never_comes_from_a_message(
    client, registry_settings, counting_client
) -> None:
    tp = topic("inputs")
    (value,) = avro_bytes(client, EVENT_AVRO, [event(1)], tp)
    elsewhere = f"http://127.0.0.1:{free_port()}"
    # Headers a hostile producer might try: a registry address, and the header form of a
    # schema id (a GUID) that confluent-kafka honours when given a serialization context.
    headers = [
        ("schema.registry.url", elsewhere.encode()),
        ("__value_schema_id", b"\x01" + uuid.uuid4().bytes),
    ]
    counting = counting_client()
    decoder = RegistryDecoder(registry_settings, client=counting.client)
    out = decode_inputs(raw([value], tp, headers), pipeline=P, registry=decoder)
    assert out.rows.event_ids.to_pylist() == ["e1"]
    schema_id = int.from_bytes(value[1:5], "big")
    assert counting.calls == [f"GET schemas/ids/{schema_id}"]
    assert counting.client._rest_client.base_urls == [registry_settings.url]


def test_an_unreachable_registry_fails_the_fetch_instead_of_dead_lettering(client) -> None:
    tp = topic("inputs")
    values = avro_bytes(client, EVENT_AVRO, [event(1)], tp)
    down = SchemaRegistry(url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(RegistryUnavailable, match="nothing was dead-lettered"):
        decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(down))


def test_unsupported_schema_type_is_a_dead_letter(client, registry_settings) -> None:
    from confluent_kafka.schema_registry import Schema

    subject = f"{topic('inputs')}-value"
    proto = 'syntax = "proto3";\nmessage M { string event_id = 1; }\n'
    schema_id = client.register_schema(subject, Schema(proto, schema_type="PROTOBUF"))
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00\x0a\x02e1"
    out = decode_inputs(raw([value], "t"), pipeline=P, registry=RegistryDecoder(registry_settings))
    (dead,) = out.dead_letters
    assert dead.reason.value == "unsupported_schema" and "PROTOBUF" in dead.detail


def test_avro_labels_are_archived_like_json_labels(client, registry_settings) -> None:
    tp = topic("labels")
    docs = [
        {"event_id": f"e{i}", "label": i % 2, "timestamp": "2026-01-01T00:00:00Z", "pipeline": P}
        for i in range(10)
    ]
    wrong = {**docs[0], "pipeline": "other"}
    values = avro_bytes(client, LABEL_AVRO, [*docs, wrong], tp)
    unknown = b"\x00" + (2**31 - 9).to_bytes(4, "big") + values[0][5:]
    out = decode_labels(
        raw([*values, unknown], tp), pipeline=P, registry=RegistryDecoder(registry_settings)
    )
    assert out.table is not None
    assert out.table.column("event_id").to_pylist() == [f"e{i}" for i in range(10)]
    assert out.table.column("label").to_pylist() == [i % 2 for i in range(10)]
    assert [d.reason.value for d in out.dead_letters] == ["wrong_pipeline", "unknown_schema"]


def test_many_known_schemas_in_one_fetch_all_decode(client, registry_settings) -> None:
    tp = topic("inputs")
    values = []
    for k in range(MAX_MISSES_PER_FETCH + 8):  # more ids than the miss budget, all known
        values += avro_bytes(client, {**EVENT_AVRO, "name": f"Version{k}"}, [event(k)], tp)
    assert len({v[1:5] for v in values}) == MAX_MISSES_PER_FETCH + 8
    out = decode_inputs(raw(values, tp), pipeline=P, registry=RegistryDecoder(registry_settings))
    assert out.dead_letters == [] and len(out.rows) == MAX_MISSES_PER_FETCH + 8
