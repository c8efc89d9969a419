"""One label type per pipeline: numbers (class ids, targets) or strings (class names).

Labels may be integers, floats or strings on the wire, but a pipeline's labels must be of one
*kind*, or the archive's label segments cannot be read together (``int64 vs string``): integers
and floats mix (both are numbers), numbers and strings do not. The kind is pinned by the
config where it says (a regression target is a number), else by the first label archived —
the archive keeps it, so it survives restarts (`archived_label_kind`). The monitor dead-letters
a label of the other kind (``label_type_mismatch``); `concat_labels` reads segments written
before that existed, converting what converts and counting what it skips.

>>> import pyarrow as pa
>>> ints = pa.table({"event_id": ["a"], "label": pa.array([1], pa.int64())})
>>> strs = pa.table({"event_id": ["b", "c"], "label": ["2", "cat"]})
>>> table, skipped = concat_labels([ints, strs])
>>> table.column("label").to_pylist(), skipped
([1, 2], 1)
>>> label_kind(pa.float64()), label_kind(pa.string())
('number', 'string')
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from driftline.lifecycle_store.archive import Archive

__all__ = ["LabelKind", "archived_label_kind", "concat_labels", "label_kind", "value_kind"]

log = logging.getLogger(__name__)

LabelKind = Literal["number", "string"]


def label_kind(arrow_type: pa.DataType) -> LabelKind:
    """The kind of an archived label column's type."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return "number"


def value_kind(value: Any) -> LabelKind:
    """The kind of one label as decoded from the wire (int, float or str)."""
    return "string" if isinstance(value, str) else "number"


def archived_label_kind(archive: Archive) -> LabelKind | None:
    """The kind of the first label segment archived (None before any label)."""
    first = archive.first_label_segment()
    return None if first is None else label_kind(first.schema.field("label").type)


def _to_number(value: str) -> int | float | None:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _convert(table: pa.Table, kind: LabelKind) -> tuple[pa.Table, int]:
    """``table`` with labels of ``kind``: converted where possible, other rows dropped."""
    column = table.column("label")
    if kind == "string":
        return table.set_column(
            table.schema.get_field_index("label"), "label", pc.cast(column, pa.string())
        ), 0
    numbers = [_to_number(v) if v is not None else None for v in column.to_pylist()]
    keep = pa.array([n is not None for n in numbers])
    as_float = any(isinstance(n, float) for n in numbers)
    values = pa.array(numbers, pa.float64() if as_float else pa.int64())
    converted = table.set_column(table.schema.get_field_index("label"), "label", values)
    return converted.filter(keep), len(table) - int(pc.sum(keep).as_py() or 0)


def concat_labels(tables: list[pa.Table]) -> tuple[pa.Table, int]:
    """Label segments (oldest first) as one table of the first one's kind; also how many
    labels of another kind could not be converted and were skipped."""
    kind = label_kind(tables[0].schema.field("label").type)
    same, skipped = [], 0
    for table in tables:
        if label_kind(table.schema.field("label").type) != kind:
            table, dropped = _convert(table, kind)
            skipped += dropped
        same.append(table)
    if skipped:
        log.warning(
            "skipped %d archived labels that are not of the pipeline's label kind (%s)",
            skipped,
            kind,
        )
    return pa.concat_tables(same, promote_options="permissive"), skipped
