"""RawMessage: the transport-neutral Kafka message every transport converts to.

Faust events, confluent-kafka messages and the in-process bus of the embedded runner all
become a `RawMessage` before the monitor sees them, so the processing step never depends on
a Kafka client.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class RawMessage(NamedTuple):
    """One message as read from a topic: the original bytes plus where they came from.

    Immutable; a named tuple rather than a frozen dataclass because one is built for every
    consumed record and a tuple is built in half the time.

    >>> m = RawMessage(b'{}', None, (("content-type", b"application/json"),), "fraud.inputs", 0, 7)
    >>> m.header("content-type"), m.header("missing")
    (b'application/json', None)
    """

    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp: datetime | None = None

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (case-insensitive), or None when absent."""
        wanted = name.lower()
        found: bytes | None = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found
