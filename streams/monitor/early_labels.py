"""Labels that arrive before any input: held in memory, at most `MAX_EARLY_LABELS` of them.

Until the first input row names the pipeline's features (when the config does not), labels
cannot be archived and wait in memory; 200,000 of them took 83 MB. So at most
`MAX_EARLY_LABELS` wait (about 20 MB); past that the oldest are dropped into dead letters
(reason ``early_label_overflow``, the label re-encoded as a LabelEvent), never silently.

>>> import pyarrow as pa
>>> held = EarlyLabels("p", "p.labels", limit=2)
>>> table = pa.table({"event_id": ["a", "b", "c"], "label": [1, 2, 3],
...     "timestamp": pa.array([0, 0, 0], pa.int64()), "topic": ["p.labels"] * 3,
...     "partition": pa.array([0, 0, 0], pa.int32()), "offset": pa.array([0, 1, 2], pa.int64())})
>>> [(d.reason.value, d.source_offset) for d in held.add(table)]
[('early_label_overflow', 0)]
>>> len(held), [t.num_rows for t in held.tables()]
(2, [2])
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from driftline.schemas import DeadLetter, DeadLetterReason, LabelEvent
from driftline.streams.monitor.codec import dead_letter
from driftline.streams.monitor.messages import RawMessage

__all__ = ["MAX_EARLY_LABELS", "EarlyLabels"]

MAX_EARLY_LABELS = 50_000
"""Most labels held before the pipeline's features are known (~20 MB at 83 MB per 200,000)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EarlyLabels:
    """Label tables waiting for the pipeline to exist, oldest first, at most ``limit`` rows."""

    def __init__(self, pipeline: str, topic: str, limit: int = MAX_EARLY_LABELS) -> None:
        self.pipeline = pipeline
        self.topic = topic
        self.limit = limit
        self._tables: list[pa.Table] = []
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, table: pa.Table) -> list[DeadLetter]:
        """Hold ``table``; return dead letters of the oldest labels beyond ``limit``."""
        self._tables.append(table)
        self._rows += table.num_rows
        dead: list[DeadLetter] = []
        while self._rows > self.limit:
            oldest = self._tables[0]
            drop = min(oldest.num_rows, self._rows - self.limit)
            dead += self._dead_letters(oldest.slice(0, drop))
            rest = oldest.slice(drop)
            if rest.num_rows:
                self._tables[0] = rest
            else:
                self._tables.pop(0)
            self._rows -= drop
        return dead

    def tables(self) -> list[pa.Table]:
        """Every held table, oldest first (still held until `clear`)."""
        return list(self._tables)

    def clear(self) -> None:
        """Forget the held tables (once they are archived)."""
        self._tables, self._rows = [], 0

    def _dead_letters(self, table: pa.Table) -> list[DeadLetter]:
        detail = (
            f"more than {self.limit} labels arrived before any input row of pipeline "
            f"{self.pipeline!r}: the oldest are dropped (set feature_names so labels are "
            "archived at once)"
        )
        out = []
        for row in table.to_pylist():
            stamp = row["timestamp"]
            if isinstance(stamp, int):
                stamp = _EPOCH + timedelta(microseconds=stamp)
            event = LabelEvent(
                event_id=row["event_id"], label=row["label"], timestamp=stamp, pipeline=None
            )
            message = RawMessage(
                event.to_json(),
                topic=row.get("topic") or self.topic,
                partition=row.get("partition") or 0,
                offset=row.get("offset") or 0,
            )
            reason = DeadLetterReason.EARLY_LABEL_OVERFLOW
            out.append(dead_letter(message, self.pipeline, reason, detail))
        return out
