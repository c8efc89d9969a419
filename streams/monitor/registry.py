"""Inputs and labels in the Confluent wire format, decoded with the configured registry's schemas.

Producers that use Schema Registry serializers (Avro or JSON Schema) write a value as byte
0 (the "magic byte"), a 4-byte big-endian schema id, then the data. `RegistryDecoder` turns a
fetch of such values into plain mappings with confluent-kafka's ``AvroDeserializer`` and
``JSONDeserializer``; the codec then holds each mapping to the same contract as a JSON event
(`codec.decode_inputs`, `codec.decode_labels`). A JSON document never starts with byte 0,
so the two forms cannot be confused.

What a hostile producer controls, and what it cannot:

* the **registry address** comes only from the settings (`SchemaRegistry.url`); a message's
  id only selects a schema *at that registry*. The deserializers are called without a
  serialization context, so neither headers (``__value_schema_id``) nor subject-name
  strategies take part: the 4 bytes after the magic byte are the only input, and no
  data-contract rules of the registry run on untrusted bytes;
* **registry requests** are one per schema id new to this process (the client caches the
  schema; the deserializers cache the parsed form), never one per message. Ids the registry
  does not know are remembered for `UNKNOWN_TTL_S`, so a flood of made-up ids costs at most
  one request per distinct id per minute, and at most `MAX_MISSES_PER_FETCH` misses per
  fetch (then the rest of the fetch's new ids are dead-lettered without asking, saying so:
  only during such a flood can a good message be among them, and replaying its dead letter
  recovers it);
* **memory**: at most ``cache_schemas`` schemas are held; past that, the caches start over.

Outcomes, per message: a mapping; or a `Rejected` with a reason code — ``unknown_schema``
(the id is not registered there, or no registry is configured), ``unsupported_schema``
(e.g. Protobuf), ``malformed`` (the bytes do not decode with their schema, or break a JSON
Schema). A registry that cannot be reached, answers 5xx, or refuses the credentials is
different: the messages are good, and dead-lettering them would lose rows that a registry
back in a minute would have decoded. `RegistryUnavailable` is raised instead; the step fails,
nothing of the fetch is committed, and the worker retries it (Faust restarts the agent;
offsets stay where they were), while an operator sees the error in the log and the restart
metrics. A bounded outage delays rows; it never loses them.

>>> decoder = RegistryDecoder(None)   # no registry configured
>>> msg = RawMessage(b"\\x00\\x00\\x00\\x00\\x07{}", topic="p.inputs", offset=0)
>>> [r.reason.value for r in decoder.decode([msg])]
['unknown_schema']
>>> wire_schema_id(msg.value), wire_schema_id(b'{"a": 1}')
(7, None)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftline.schemas import DeadLetterReason
from driftline.streams.exceptions import StreamsError
from driftline.streams.monitor.messages import RawMessage

if TYPE_CHECKING:
    from driftline.config.settings import SchemaRegistry

__all__ = [
    "MAX_MISSES_PER_FETCH",
    "UNKNOWN_TTL_S",
    "RegistryDecoder",
    "RegistryUnavailable",
    "Rejected",
    "wire_schema_id",
]

MAGIC = 0
HEADER_BYTES = 5
UNKNOWN_TTL_S = 60.0
"""How long an id the registry answered 404 for is dead-lettered without asking again."""
MAX_MISSES_PER_FETCH = 32
"""Ids of one fetch the registry may answer "not found" for before the rest of the fetch's
new ids are dead-lettered without asking (ids it knows never count)."""


def wire_schema_id(value: bytes) -> int | None:
    """The schema id of a Confluent wire-format value, or None when ``value`` is not one."""
    if len(value) >= HEADER_BYTES and value[0] == MAGIC:
        return int.from_bytes(value[1:HEADER_BYTES], "big")
    return None


class RegistryUnavailable(StreamsError):
    """The configured Schema Registry did not answer usably (down, 5xx, refused credentials):
    the messages may be fine, so the step fails instead of dead-lettering them."""


@dataclass(frozen=True)
class Rejected:
    """Why one wire-format message cannot be used (becomes a dead letter)."""

    reason: DeadLetterReason
    detail: str


# What one schema id resolved to: a decoding function, or why its messages are rejected.
_Resolved = Callable[[bytes], Any] | Rejected


class RegistryDecoder:
    """Decodes wire-format values with the schemas of one configured registry (see module).

    ``settings`` None (no registry configured) rejects every wire-format message as
    ``unknown_schema``, saying how to configure one. ``client`` replaces the
    ``SchemaRegistryClient`` built from ``settings`` (for tests that count requests).
    """

    def __init__(self, settings: SchemaRegistry | None, *, client: Any = None) -> None:
        self.settings = settings if settings is not None and settings.configured else None
        self._client_override = client
        self.cache_schemas = self.settings.cache_schemas if self.settings else 1000
        self.requests = 0
        """Registry lookups made so far (schema fetches by id)."""
        self._reset()

    @classmethod
    def from_settings(cls, settings: SchemaRegistry) -> RegistryDecoder | None:
        """A decoder for ``settings``, or None when no registry is configured."""
        return cls(settings) if settings.configured else None

    def _reset(self) -> None:
        self._resolved: dict[int, _Resolved] = {}
        self._unknown: dict[int, float] = {}
        self._client: Any = None
        self._avro: Any = None
        self._json: Any = None

    def _clients(self) -> Any:
        if self._client is None:
            assert self.settings is not None
            try:
                from confluent_kafka.schema_registry import SchemaRegistryClient
                from confluent_kafka.schema_registry.avro import AvroDeserializer
                from confluent_kafka.schema_registry.json_schema import JSONDeserializer
            except ImportError as exc:  # the `registry` extra is not installed
                raise RegistryUnavailable(
                    f"wire-format messages need the Schema Registry client ({exc}): "
                    "pip install 'driftline[registry]'"
                ) from None
            client = self._client_override or SchemaRegistryClient(self.settings.client_config())
            self._client = client
            # No subject: no reader-schema lookups or data-contract rules (see module).
            conf = {"subject.name.strategy": _no_subject}
            self._avro = AvroDeserializer(client, conf=conf)
            # The producer's JSON Schema is not validated again here: every decoded event is
            # held to driftline's input contract next (codec), which is what decides; the
            # deserializer's per-message jsonschema pass cost 50x the JSON path (BENCHMARKS.md).
            self._json = JSONDeserializer(
                None, schema_registry_client=client, conf={**conf, "validate": False}
            )
        return self._client

    # ------------------------------------------------------------------ resolving ids
    def _resolve_all(self, ids: set[int]) -> dict[int, _Resolved]:
        if len(self._resolved) + len(ids - self._resolved.keys()) > self.cache_schemas:
            self._reset()  # bounded memory: start the caches over (a few refetches)
        now = time.monotonic()
        out: dict[int, _Resolved] = {}
        misses = 0
        for schema_id in sorted(ids):
            cached = self._resolved.get(schema_id)
            if cached is not None:
                out[schema_id] = cached
            elif self.settings is None:
                out[schema_id] = Rejected(
                    DeadLetterReason.UNKNOWN_SCHEMA,
                    f"Confluent wire format (schema id {schema_id}) but no schema registry is "
                    "configured: set DRIFTLINE_SCHEMA_REGISTRY__URL",
                )
            elif self._unknown.get(schema_id, 0.0) > now:
                out[schema_id] = _unknown(schema_id)
            elif misses >= MAX_MISSES_PER_FETCH:
                out[schema_id] = Rejected(
                    DeadLetterReason.UNKNOWN_SCHEMA,
                    f"schema id {schema_id} not looked up: the registry already knew "
                    f"{MAX_MISSES_PER_FETCH} ids of this fetch not (replay the dead letter "
                    "to try it again)",
                )
            else:
                out[schema_id] = resolved = self._resolve(schema_id, now)
                misses += isinstance(resolved, Rejected)
        return out

    def _resolve(self, schema_id: int, now: float) -> _Resolved:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        client = self._clients()
        self.requests += 1
        try:
            schema = client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if _about_the_id(exc):
                if len(self._unknown) >= self.cache_schemas:
                    self._unknown.clear()
                self._unknown[schema_id] = now + UNKNOWN_TTL_S
                return _unknown(schema_id, exc.http_status_code)
            raise RegistryUnavailable(_registry_failure(schema_id, exc)) from None
        except Exception as exc:  # connection refused, timeout, TLS, bad answer
            raise RegistryUnavailable(_registry_failure(schema_id, exc)) from None
        kind = (schema.schema_type or "AVRO").upper()
        resolved: _Resolved
        if kind == "AVRO" and _recursive_avro(schema.schema_str):
            resolved = Rejected(
                DeadLetterReason.UNSUPPORTED_SCHEMA,
                f"schema id {schema_id} is a recursive Avro schema: a few kilobytes nested "
                "deep would overflow the decoder's stack, and driftline's events are flat",
            )
        elif kind == "AVRO":
            resolved = self._avro
        elif kind == "JSON":
            resolved = self._json
        else:
            resolved = Rejected(
                DeadLetterReason.UNSUPPORTED_SCHEMA,
                f"schema id {schema_id} is a {kind} schema: driftline reads Avro and JSON Schema",
            )
        self._resolved[schema_id] = resolved
        return resolved

    # ------------------------------------------------------------------ decoding
    def decode(self, messages: Sequence[RawMessage]) -> list[Any]:
        """One result per message, in order: the decoded value, or a `Rejected`.

        Every message must be in the wire format (`wire_schema_id` not None). Raises
        `RegistryUnavailable` when the registry cannot be asked (see the module docstring).
        """
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.serialization import SerializationError

        ids = [wire_schema_id(m.value) for m in messages]
        resolved = self._resolve_all({i for i in ids if i is not None})
        out: list[Any] = []
        for message, schema_id in zip(messages, ids, strict=True):
            assert schema_id is not None, "decode() takes wire-format messages only"
            how = resolved[schema_id]
            if isinstance(how, Rejected):
                out.append(how)
                continue
            try:
                # No context: the id comes from the 5-byte header only (see module).
                out.append(how(message.value))
            except SerializationError as exc:
                out.append(
                    Rejected(
                        DeadLetterReason.MALFORMED,
                        f"does not decode with its registered schema (id {schema_id}): {exc}",
                    )
                )
            except SchemaRegistryError as exc:  # e.g. a reference of a JSON Schema
                if not _about_the_id(exc):
                    raise RegistryUnavailable(_registry_failure(schema_id, exc)) from None
                out.append(_unknown(schema_id, exc.http_status_code))
            except _transport_errors() as exc:
                raise RegistryUnavailable(_registry_failure(schema_id, exc)) from None
            except Exception as exc:  # hostile bytes can make fastavro raise anything
                out.append(
                    Rejected(
                        DeadLetterReason.MALFORMED,
                        f"does not decode with its registered schema (id {schema_id}): "
                        f"{type(exc).__name__}: {exc}",
                    )
                )
        return out


_AVRO_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)


def _recursive_avro(schema_str: str | None) -> bool:
    """Whether a named type of the Avro schema ``schema_str`` contains itself (a linked list,
    a tree): its values can nest as deep as the bytes allow, and fastavro decodes them by C
    recursion (5 kB nested 5,000 deep crashed the process with a segmentation fault).

    >>> _recursive_avro('{"type": "record", "name": "N", "fields": '
    ...                 '[{"name": "next", "type": ["null", "N"]}]}')
    True
    >>> _recursive_avro('{"type": "record", "name": "E", "fields": '
    ...                 '[{"name": "x", "type": "long"}]}')
    False
    """
    import json

    try:
        tree = json.loads(schema_str or "")
    except (ValueError, RecursionError):
        return False  # the deserializer refuses it (malformed) on its own

    def full(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def walk(node: Any, namespace: str, path: frozenset[str]) -> bool:
        if isinstance(node, str):
            return node not in _AVRO_PRIMITIVES and full(node, namespace) in path
        if isinstance(node, list):
            return any(walk(n, namespace, path) for n in node)
        if not isinstance(node, dict):
            return False
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed") and isinstance(node.get("name"), str):
            name = full(node["name"], str(node.get("namespace") or namespace))
            namespace = name.rpartition(".")[0]
            path = path | {name}
        children = [f.get("type") for f in node.get("fields", []) if isinstance(f, dict)]
        children += [node.get(k) for k in ("items", "values")]
        if not isinstance(kind, str) or kind not in ("record", "error", "enum", "fixed"):
            children.append(kind)
        return any(walk(c, namespace, path) for c in children if c is not None)

    try:
        return walk(tree, "", frozenset())
    except RecursionError:
        return True  # nested beyond Python's own limit: refuse it as well


def _no_subject(ctx: Any, record_name: Any) -> None:
    return None


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Failures of the connection, not of a message: the registry is unavailable."""
    from confluent_kafka.schema_registry.common._httpx_compat import httpx

    return (OSError, httpx.TransportError)


def _about_the_id(exc: Any) -> bool:
    """Whether the registry's error answer is about the id asked for (so a dead letter is
    right) rather than about the registry (credentials, rate limits, its own failures)."""
    status = exc.http_status_code
    return isinstance(status, int) and 400 <= status < 500 and status not in (401, 403, 408, 429)


def _unknown(schema_id: int, status: int | None = 404) -> Rejected:
    answer = "" if status in (None, 404) else f" (the registry answered HTTP {status})"
    return Rejected(
        DeadLetterReason.UNKNOWN_SCHEMA,
        f"schema id {schema_id} is not registered at the configured schema registry{answer}",
    )


def _registry_failure(schema_id: int, exc: BaseException) -> str:
    return (
        f"the schema registry did not return schema id {schema_id} "
        f"({type(exc).__name__}: {str(exc)[:300]}); the fetch is retried, nothing was "
        "dead-lettered"
    )
