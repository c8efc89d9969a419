"""Decode throughput of Confluent wire-format events (Avro, JSON Schema) vs plain JSON.

Everything goes through the monitor's codec (`decode_inputs`: decode + the input contract),
in fetches of ``--fetch`` events with ``--features`` features; the registry is asked once per
schema id (first fetch, not timed: the cache is warm, as in a running worker). "raw Avro" is
fastavro's ``schemaless_reader`` alone on the same bytes, the floor of any Avro decode.

    eval "$(bash scripts/registry.sh start)"
    python benchmarks/bench_registry_decode.py            # ~30 s
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import uuid
from collections.abc import Callable

from driftline.config.settings import SchemaRegistry
from driftline.streams.monitor.codec import decode_inputs
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.registry import RegistryDecoder


def best_rate(work: Callable[[], object], events: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - t0)
    return events / best


def main() -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from fastavro import parse_schema, schemaless_reader

    from driftline.schemas import load_json_schema

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fetch", type=int, default=1000)
    parser.add_argument("--fetches", type=int, default=20)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    url = os.environ["DRIFTLINE_TEST_SCHEMA_REGISTRY_URL"]
    settings = SchemaRegistry(url=url)
    client = SchemaRegistryClient(settings.client_config())
    pipeline = "bench"
    topic = f"bench-{uuid.uuid4().hex[:8]}.inputs"
    ctx = SerializationContext(topic, MessageField.VALUE)
    names = [f"f{j}" for j in range(args.features)]
    docs = [
        {
            "event_id": f"e{i}",
            "timestamp": "2026-01-01T00:00:00.123456Z",
            "pipeline": pipeline,
            "features": {n: i * 0.001 + j for j, n in enumerate(names)},
            "model_version": "v1",
        }
        for i in range(args.fetch)
    ]
    avsc = {
        "type": "record",
        "name": "InferenceEvent",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "timestamp", "type": "string"},
            {"name": "pipeline", "type": "string"},
            {"name": "features", "type": {"type": "map", "values": "double"}},
            {"name": "model_version", "type": ["null", "string"], "default": None},
        ],
    }
    payloads = {
        "plain JSON (orjson bytes, no registry)": [json.dumps(d).encode() for d in docs],
        "Avro, Confluent wire format": [
            AvroSerializer(client, json.dumps(avsc))(d, ctx) for d in docs
        ],
        "JSON Schema, Confluent wire format": [
            JSONSerializer(json.dumps(load_json_schema("inference_event")), client)(d, ctx)
            for d in docs
        ],
    }
    decoder = RegistryDecoder(settings)
    n = args.fetch * args.fetches
    print(
        f"{args.fetches} fetches of {args.fetch} events, {args.features} features, "
        f"best of {args.repeats}\n"
    )
    print("| payload | events/s through decode_inputs | vs plain JSON |")
    print("|---|---|---|")
    base = None
    for label, values in payloads.items():
        messages = [RawMessage(v, topic=topic, offset=i) for i, v in enumerate(values)]
        out = decode_inputs(messages, pipeline=pipeline, registry=decoder)  # warm the cache
        assert not out.dead_letters and len(out.rows) == args.fetch, out.dead_letters[:1]

        def run(messages: list[RawMessage] = messages) -> None:
            for _ in range(args.fetches):
                decode_inputs(messages, pipeline=pipeline, registry=decoder)

        rate = best_rate(run, n, args.repeats)
        base = base or rate
        print(f"| {label} | {rate:,.0f} | {rate / base:.2f}x |")
    parsed = parse_schema(avsc)
    avro = payloads["Avro, Confluent wire format"]

    def raw() -> None:
        for _ in range(args.fetches):
            for v in avro:
                schemaless_reader(io.BytesIO(v[5:]), parsed, None)

    rate = best_rate(raw, n, args.repeats)
    print(
        f"| raw Avro (fastavro schemaless_reader only, no contract) | {rate:,.0f} | "
        f"{rate / base:.2f}x |"
    )
    print(f"\nregistry requests: {decoder.requests}")


if __name__ == "__main__":
    main()
