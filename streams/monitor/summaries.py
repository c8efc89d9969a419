"""Detector summaries on ``{p}.detector-summaries``: one partition's rows for the pooled chart.

With ``detection = "pooled"`` each input partition's worker computes the detector's
``partial_state`` of its rows (validation and the feature map, the costly half of an update)
and publishes it here; the one worker that owns this one-partition topic merges them into
the pipeline's chart (`driftline.streams.monitor.pool.PipelinePool`).

The topic is an input like any other: anyone who may produce to it can send anything. So the
format is a fixed binary layout whose every size is checked against the message length
*before* anything is allocated — a header (JSON, at most `MAX_HEADER_BYTES`) naming the
pipeline, the reference, the input partition and the array shapes, then four raw
little-endian arrays (features, rows, offsets, timestamps). No pickle, no zip, no shape taken
on trust; non-finite values, offsets that go backwards, a wrong pipeline, more than
`MAX_ROWS` rows or a message over `MAX_SUMMARY_BYTES` are refused with a `SummaryError`
naming the reason (the owner dead-letters the message; it never crashes on one).

>>> import numpy as np
>>> s = Summary("fraud", "dv-1", 3, 0, np.zeros((2, 4), np.float32), np.ones((2, 2)),
...             np.array([10, 11]), np.array([5, 6]))
>>> back = decode_summary(encode_summary(s), pipeline="fraud")
>>> back.partition, back.rows.shape, back.offsets.tolist()
(3, (2, 2), [10, 11])
>>> try:
...     decode_summary(b"junk", pipeline="fraud")
... except SummaryError as exc:
...     print(exc.reason.value)
malformed
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.schemas import DeadLetterReason

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_ROWS",
    "MAX_SUMMARY_BYTES",
    "Summary",
    "SummaryError",
    "decode_summary",
    "encode_summary",
]

_MAGIC = b"DLSUM\x00\x01\x00"
MAX_HEADER_BYTES = 4096
MAX_ROWS = 4096
"""Rows per summary; a step splits larger batches (the monitor's detect chunk is this size)."""
MAX_SUMMARY_BYTES = 900 * 1024
"""Largest summary read or written: under Kafka's default 1 MB message limit."""
_MAX_WIDTH = 1 << 16
_FLOATS: dict[str, np.dtype[Any]] = {"f4": np.dtype("<f4"), "f8": np.dtype("<f8")}


class SummaryError(ValueError):
    """A message on the summaries topic that is not a valid summary of this pipeline."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, eq=False)
class Summary:
    """The partial state of consecutive rows of one input partition.

    ``first_row`` numbers the first row among the partition's valid rows (the step counts
    them, and its checkpoint restores the count), so the owner folds each row once however
    often a summary is re-sent after a restart. ``features`` is the detector's feature map
    of ``rows`` (``partial_state``), ``offsets`` the input offset of each row (rows of one
    Arrow message share it), ``stamps_us`` each row's event time in microseconds;
    ``reference`` the data version the detector was fitted on (a summary of another reference
    cannot be merged).
    """

    pipeline: str
    reference: str
    partition: int
    first_row: int
    features: np.ndarray
    rows: np.ndarray
    offsets: np.ndarray
    stamps_us: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def encode_summary(summary: Summary) -> bytes:
    """The wire bytes of ``summary`` (see the module docstring)."""
    features = np.ascontiguousarray(summary.features)
    kind = "f4" if features.dtype == np.float32 else "f8"
    header = {
        "pipeline": summary.pipeline,
        "reference": summary.reference,
        "partition": int(summary.partition),
        "first_row": int(summary.first_row),
        "rows": len(summary),
        "map_dim": int(features.shape[1]),
        "d": int(summary.rows.shape[1]),
        "features": kind,
    }
    head = json.dumps(header, sort_keys=True).encode()
    return b"".join(
        [
            _MAGIC,
            struct.pack(">I", len(head)),
            head,
            features.astype(_FLOATS[kind], copy=False).tobytes(),
            np.ascontiguousarray(summary.rows, dtype="<f8").tobytes(),
            np.ascontiguousarray(summary.offsets, dtype="<i8").tobytes(),
            np.ascontiguousarray(summary.stamps_us, dtype="<i8").tobytes(),
        ]
    )


def decode_summary(data: bytes, *, pipeline: str, max_bytes: int = MAX_SUMMARY_BYTES) -> Summary:
    """Parse and validate untrusted ``data``; raise `SummaryError` with the reason."""
    malformed = DeadLetterReason.MALFORMED
    if len(data) > max_bytes:
        raise SummaryError(
            DeadLetterReason.OVERSIZED, f"{len(data)} bytes, more than the {max_bytes} allowed"
        )
    start = len(_MAGIC) + 4
    if len(data) < start or data[: len(_MAGIC)] != _MAGIC:
        raise SummaryError(malformed, f"not a detector summary (starts with {data[:8]!r})")
    (n_head,) = struct.unpack(">I", data[len(_MAGIC) : start])
    if n_head > MAX_HEADER_BYTES or start + n_head > len(data):
        raise SummaryError(malformed, f"header of {n_head} bytes does not fit the message")
    try:
        header = json.loads(data[start : start + n_head])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SummaryError(malformed, f"header is not JSON: {exc}") from None
    fields = _header_fields(header)
    if fields[0] != pipeline:
        raise SummaryError(
            DeadLetterReason.WRONG_PIPELINE,
            f"summary of pipeline {fields[0]!r} on the topic of {pipeline!r}",
        )
    name, reference, partition, first_row, n, map_dim, d, kind = fields
    dtype = _FLOATS[kind]
    sizes = [n * map_dim * dtype.itemsize, n * d * 8, n * 8, n * 8]
    body = start + n_head
    if body + sum(sizes) != len(data):
        raise SummaryError(
            malformed,
            f"{len(data) - body} bytes of arrays where the header's shapes need {sum(sizes)}",
        )
    arrays = []
    pos = body
    for size, dt in zip(
        sizes, [dtype, np.dtype("<f8"), np.dtype("<i8"), np.dtype("<i8")], strict=True
    ):
        arrays.append(np.frombuffer(data, dtype=dt, count=size // dt.itemsize, offset=pos))
        pos += size
    features = arrays[0].reshape(n, map_dim)
    rows = arrays[1].reshape(n, d)
    offsets, stamps = arrays[2], arrays[3]
    if not (np.isfinite(features).all() and np.isfinite(rows).all()):
        raise SummaryError(DeadLetterReason.NON_FINITE, "features or rows hold NaN or inf")
    if offsets.min() < 0 or (np.diff(offsets) < 0).any():
        raise SummaryError(
            DeadLetterReason.SCHEMA_VIOLATION, "offsets are negative or go backwards"
        )
    return Summary(name, reference, partition, first_row, features, rows, offsets, stamps)


def _header_fields(header: object) -> tuple[str, str, int, int, int, int, int, str]:
    violation = DeadLetterReason.SCHEMA_VIOLATION
    keys = {"pipeline", "reference", "partition", "first_row", "rows", "map_dim", "d", "features"}
    if not isinstance(header, dict) or set(header) != keys:
        got = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise SummaryError(violation, f"header fields {got}; expected {sorted(keys)}")
    name, reference, kind = header["pipeline"], header["reference"], header["features"]
    if not (isinstance(name, str) and isinstance(reference, str) and kind in _FLOATS):
        raise SummaryError(violation, "pipeline and reference must be strings, features f4|f8")
    ints = [header[k] for k in ("partition", "first_row", "rows", "map_dim", "d")]
    if not all(type(v) is int for v in ints):
        raise SummaryError(violation, "partition, first_row, rows, map_dim, d must be integers")
    partition, first_row, n, map_dim, d = ints
    if not (0 <= partition < 1 << 31 and 0 <= first_row < 1 << 62 and 1 <= n <= MAX_ROWS):
        raise SummaryError(
            violation, f"partition {partition} or {n} rows out of range (1..{MAX_ROWS} rows)"
        )
    if not (1 <= map_dim <= _MAX_WIDTH and 1 <= d <= _MAX_WIDTH):
        raise SummaryError(violation, f"widths {map_dim} and {d} out of range")
    return name, reference, partition, first_row, n, map_dim, d, kind
