"""Registered schemas that hostile bytes could turn against the decoder.

The registry is trusted (who registers schemas is trusted like the operator), but a recursive
Avro schema is legitimate there (a tree, a linked list) and lets a *producer* nest a value as
deep as its bytes allow. The decoding runs in a child process: on main it died of a
segmentation fault (fastavro decodes nested records by C recursion), taking the worker with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from driftline.streams.monitor.registry import _recursive_avro

REPO = Path(__file__).resolve().parents[2]

LINKED = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}

_CHILD = textwrap.dedent(
    """
    import json, sys
    from confluent_kafka.schema_registry import Schema
    from driftline.config.settings import SchemaRegistry
    from driftline.streams.monitor.messages import RawMessage
    from driftline.streams.monitor.registry import RegistryDecoder

    schema, depth = sys.argv[1], int(sys.argv[2])

    class OneSchema:  # the registry's answer for every id: the schema under test
        def get_schema(self, schema_id, *args, **kwargs):
            return Schema(schema, "AVRO")

    decoder = RegistryDecoder(SchemaRegistry(url="http://127.0.0.1:9"), client=OneSchema())
    value = b"\\x00\\x00\\x00\\x00\\x01" + b"\\x02" * depth + b"\\x00"
    (out,) = decoder.decode([RawMessage(value, topic="p.inputs", offset=0)])
    print(json.dumps([type(out).__name__, getattr(getattr(out, "reason", None), "value", None)]))
    """
)


def _decode_in_child(schema: dict[str, object], depth: int) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(schema), str(depth)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert run.returncode == 0, f"the decoder died (exit {run.returncode}): {run.stderr[-500:]}"
    return list(json.loads(run.stdout.strip().splitlines()[-1]))


def test_a_deeply_nested_value_of_a_recursive_avro_schema_is_a_dead_letter() -> None:
    """20 kB nested 20,000 deep: a dead letter naming the schema, not a crashed process."""
    assert _decode_in_child(LINKED, 20_000) == ["Rejected", "unsupported_schema"]


@pytest.mark.parametrize(
    ("schema", "recursive"),
    [
        (LINKED, True),
        (  # mutual recursion through a namespace
            {
                "type": "record",
                "name": "A",
                "namespace": "x.y",
                "fields": [
                    {
                        "name": "b",
                        "type": {
                            "type": "record",
                            "name": "B",
                            "fields": [{"name": "a", "type": {"type": "array", "items": "x.y.A"}}],
                        },
                    }
                ],
            },
            True,
        ),
        (  # a named type used twice, side by side: not recursive
            {
                "type": "record",
                "name": "Event",
                "fields": [
                    {"name": "p", "type": {"type": "record", "name": "P", "fields": []}},
                    {"name": "q", "type": ["null", "P"]},
                    {"name": "features", "type": {"type": "map", "values": "double"}},
                ],
            },
            False,
        ),
    ],
)
def test_recursive_avro_schemas_are_told_apart(schema: dict[str, object], recursive: bool) -> None:
    assert _recursive_avro(json.dumps(schema)) is recursive
