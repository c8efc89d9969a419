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

Once a pipeline's features are known, `fixed_decoder` decodes the events that carry exactly
those features (in any order) without building a dict per event: what it accepts is what
`decode_event` accepts with that feature set, and the values come in the pipeline's order.

>>> fixed = fixed_decoder(("x", "y"))(b'{"event_id":"e1","timestamp":"t","pipeline":"p",'
...                                   b'"features":{"y":2,"x":1}}')
>>> msgspec.structs.astuple(fixed.features), isinstance(fixed, WireEvent)
((1.0, 2.0), True)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, cast

import msgspec

__all__ = ["WireEvent", "decode_event", "fixed_decoder"]


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


@lru_cache(maxsize=16)
def fixed_decoder(names: tuple[str, ...]) -> Callable[[bytes], WireEvent] | None:
    """A decoder of the `WireEvent` whose features are exactly ``names``, any key order
    (``features`` is then a struct: `msgspec.structs.astuple` gives the values in ``names``
    order); None for no names or repeated ones. It accepts a subset of what `decode_event`
    accepts: a document it refuses is decoded again with `decode_event` to learn why."""
    if not names or len(set(names)) != len(names):
        return None
    fields = [f"f{i}" for i in range(len(names))]
    features = msgspec.defstruct(
        "Features",
        [(f, float) for f in fields],
        rename=dict(zip(fields, names, strict=True)),
        forbid_unknown_fields=True,
    )
    event = msgspec.defstruct(
        "FixedEvent", [("features", features)], bases=(WireEvent,), forbid_unknown_fields=True
    )
    return cast(Callable[[bytes], WireEvent], msgspec.json.Decoder(event).decode)
