"""Look at an Arrow IPC stream's message headers before pyarrow decodes its bodies.

Arrow IPC may compress each body buffer (LZ4 or ZSTD), with the decompressed length written by
the sender: a 25 kB message of zeros decodes to 800 MB, so a single Kafka message could ask a
worker for terabytes. Kafka compresses messages already (the producer's
``compression.type``), so an `InferenceBatch` is refused when any record or dictionary batch
of its stream declares body compression; nothing is decompressed.

pyarrow does not expose a message's header fields, so the few needed are read from the
flatbuffer here (pyarrow has verified it when it hands out the message).

>>> import pyarrow as pa
>>> table = pa.table({"x": [0.0] * 1000})
>>> def ipc(**options):
...     sink = pa.BufferOutputStream()
...     with pa.ipc.new_stream(sink, table.schema,
...                            options=pa.ipc.IpcWriteOptions(**options)) as writer:
...         writer.write_table(table)
...     return sink.getvalue()
>>> compressed_batches(ipc()), compressed_batches(ipc(compression="zstd"))
(0, 1)
"""

from __future__ import annotations

import struct

import pyarrow as pa

__all__ = ["compressed_batches"]

_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # MessageHeader union tags (Message.fbs)
_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2  # fields of table Message
_RECORD_BATCH_COMPRESSION = 3  # field of table RecordBatch
_DICTIONARY_BATCH_DATA = 1  # field of table DictionaryBatch (a RecordBatch)


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Absolute position of field ``index`` of the flatbuffer table at ``table`` (None: absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * index
    if slot + 2 > size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + offset if offset else None


def _deref(buf: bytes, at: int) -> int:
    return at + struct.unpack_from("<I", buf, at)[0]


def _compressed(metadata: bytes) -> bool:
    message = _deref(metadata, 0)
    kind_at = _field(metadata, message, _MESSAGE_HEADER_TYPE)
    header_at = _field(metadata, message, _MESSAGE_HEADER)
    if kind_at is None or header_at is None:
        return False
    kind = metadata[kind_at]
    if kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return False
    batch = _deref(metadata, header_at)
    if kind == _DICTIONARY_BATCH:
        data_at = _field(metadata, batch, _DICTIONARY_BATCH_DATA)
        if data_at is None:
            return False
        batch = _deref(metadata, data_at)
    return _field(metadata, batch, _RECORD_BATCH_COMPRESSION) is not None


def compressed_batches(data: bytes | pa.Buffer) -> int:
    """How many batches of the IPC stream ``data`` declare body compression.

    Raises ``pyarrow.ArrowInvalid`` (or ``struct.error``) when the stream's messages cannot
    be read; nothing of a body is decoded.
    """
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(data))
    count = 0
    for message in reader:
        if _compressed(message.metadata.to_pybytes()):
            count += 1
    return count
