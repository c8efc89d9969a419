"""Pickle-free byte format for sketches and detectors.

Layout: 8-byte magic, 4-byte big-endian header length, UTF-8 JSON header, then an
``np.savez`` archive of the arrays (read back with ``allow_pickle=False``), so loading bytes
from a changelog or a database can never execute code.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np

from driftline.detectors.exceptions import InvalidInputError

_MAGIC = b"DLDET\x00\x01\x00"


def pack(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize a JSON-able header and named arrays."""
    head = json.dumps(header, sort_keys=True).encode()
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return _MAGIC + struct.pack(">I", len(head)) + head + buf.getvalue()


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`pack`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"expected bytes from to_bytes(), got {type(data).__name__}")
    raw = bytes(data)
    if raw[: len(_MAGIC)] != _MAGIC or len(raw) < len(_MAGIC) + 4:
        raise InvalidInputError(
            f"not detector state bytes (starts with {raw[:8]!r}); pass the output of to_bytes()"
        )
    start = len(_MAGIC) + 4
    (n_head,) = struct.unpack(">I", raw[len(_MAGIC) : start])
    header = json.loads(raw[start : start + n_head].decode())
    with np.load(io.BytesIO(raw[start + n_head :]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return header, arrays
