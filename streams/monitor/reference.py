"""Growing a champion's small training set into a full detector reference.

A drift training uses only rows from the estimated change point on, so the champion's data
version may hold a few hundred rows: too few to calibrate the requested ``ert`` (the detector
then calibrates conservatively, for up to 10x the ERT, and misses subtle changes). The monitor
installs that short reference at once (sharp changes are still caught) and plans an
*extension*: the champion's rows plus the rows archived after its first training row, oldest
first, until the reference holds ``reference_rows`` rows. A row is taken only once the
detector's long ``window`` of newer rows is archived after it, so a change that begins near
the end has had a window to show in the statistic and raise its alarm first. Those rows
come from the lifecycle store's archive only, so every worker of a pipeline (and a restarted
one) builds the same content, hence the same data version id.

Rows of a later concept must not enter the reference. The extension stops at the earliest
change any alarm raised while this model's data was the reference has placed after its first
training row (the monitor's own alarms, and the drift events the store records, so a worker
that did not raise the alarm stops too); if fewer than ``reference_rows`` rows lie before
that point, the short reference stays for the rest of the deployment.

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> ext = Extension("dv-1", "dep-1", "mv-1", t, 300, 0)
>>> Extension.from_json(ext.to_json()) == ext
True
>>> later = t.replace(hour=1)
>>> ext.bound(t) is ext, ext.bound(later).until == later
(True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from driftline.lifecycle_store.archive import Archive

__all__ = ["Extension", "extended_table"]


@dataclass(frozen=True)
class Extension:
    """A planned extension of the short reference ``base`` (the champion's data version).

    ``since`` is the base's first event time, ``next_at`` the step's ``rows_seen`` at which
    the next attempt is due, ``until`` (exclusive) the earliest change placed after ``since``
    by an alarm of this model's reference, if any.
    """

    base: str
    deployment: str
    model_version: str
    since: datetime
    base_rows: int
    next_at: int
    until: datetime | None = None

    def bound(self, change_start: datetime) -> Extension:
        """This extension, stopped at ``change_start`` if that lies after ``since``."""
        if change_start <= self.since or (self.until is not None and change_start >= self.until):
            return self
        return dataclasses.replace(self, until=change_start)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["since"] = self.since.isoformat()
        out["until"] = None if self.until is None else self.until.isoformat()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Extension:
        until = data.get("until")
        return cls(
            str(data["base"]),
            str(data["deployment"]),
            str(data["model_version"]),
            datetime.fromisoformat(str(data["since"])),
            int(data["base_rows"]),
            int(data["next_at"]),
            None if until is None else datetime.fromisoformat(str(until)),
        )


def extended_table(
    base: pa.Table,
    archive: Archive,
    extension: Extension,
    rows: int,
    feature_names: Iterable[str],
    lag: int,
) -> tuple[pa.Table | None, int]:
    """The base rows plus the oldest archived rows in ``[since, until)`` not among them, as
    ``rows`` rows of ``event_id``, ``timestamp`` and the features; None while the archive
    holds too few. Also returns how many rows are still missing (0 when complete).

    Without a known end (``until``) a row is taken only once ``lag`` newer rows are archived
    after it: the chart has then watched them, so a change that just began had a window to
    raise its alarm (which bounds the extension) before its rows could enter the reference.
    Events archived in conflicting copies are left out (no copy can be trusted).
    """
    columns = ["event_id", "timestamp", *feature_names]
    base = base.select(columns)
    lag = 0 if extension.until is not None else lag
    read = archive.read_rows_checked(
        since=extension.since, until=extension.until, first_n=rows + base.num_rows + lag
    ).table
    fresh = read.filter(pc.invert(pc.is_in(read.column("event_id"), base.column("event_id"))))
    missing = rows + lag - base.num_rows - fresh.num_rows
    if missing > 0:
        return None, missing
    fresh = fresh.slice(0, rows - base.num_rows).select(columns).cast(base.schema)
    return pa.concat_tables([base, fresh]), 0
