"""The JSON wire form of an `InferenceEvent`, as a msgspec struct: the monitor's typed decoder.

msgspec decodes and type-checks in one pass in C, with no per-field Python code; the struct
states the published JSON Schema (``schemas/json/inference_event.json``) field by field, and
a property test holds the two together (for generated documents, this decoder accepts exactly
what ``jsonschema`` accepts). Two checks are left to the caller because they are cheaper over
a whole fetch at once: the timestamp pattern and calendar (`TIMESTAMP_PATTERN`, one RE2 pass
and one Arrow cast), and ``schema_version == 1`` (JSON Schema's integer 1 includes ``1.0``).

JSON numbers beyond float64 (``1e400``) are rejected here, although JSON Schema has no word
for them: they would become infinities.

>>> e = decode_event(b'{"event_id":"e1","timestamp":"2026-01-01T00:00:00Z","pipeline":"p",'
...                  b'"features":{"x":1}}')
>>> e.event_id, e.features, e.schema_version
('e1', {'x': 1.0}, 1)
>>> decode_event(b'{"event_id":"e1","timestamp":"t","pipeline":"p","features":{"x":true}}')
Traceback (most recent call last):
...
msgspec.ValidationError: Expected `float`, got `bool` - at `$.features[...]`
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["WireEvent", "decode_event"]


class WireEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One ``{p}.inputs`` JSON event; the fields and limits of the JSON Schema."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    timestamp: str
    pipeline: str
    features: Annotated[dict[str, float], msgspec.Meta(min_length=1)]
    schema_version: float = 1
    model_version: str | None = None
    prediction: int | float | str | None = None
    probabilities: list[Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]] | None = None


decode_event = msgspec.json.Decoder(WireEvent).decode
