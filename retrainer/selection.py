"""Selection policies: *which* rows train the next model (Modyn-style), labels joined by id.

``new`` takes the rows since the drift (or since the last training), ``all`` every archived
row, ``uniform`` a seeded uniform sample of all labelled rows, and ``coreset`` all new rows
plus the history rows nearest to a core set of the history (a small, diverse memory of past
concepts). Only rows with a delayed label can train; the unlabelled rows of the new window
are kept so that a label request can name the most informative of them. An event archived
in conflicting copies (one id, other features or time) is left out of every selection: its
label cannot be trusted to belong to either copy (``Selection.conflicting``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.config.pipeline import SelectionConfig
from driftline.detectors.coreset import Coreset

__all__ = [
    "Selection",
    "feature_matrix",
    "first_labelled",
    "informative_event_ids",
    "join_labels",
    "nearest_rows",
    "select_training_data",
]

LABEL = "label"
_DIST_BLOCK = 4096


@dataclass(frozen=True)
class Selection:
    """The labelled training rows (``event_id``, ``timestamp``, features, ``label``), which of
    them are new (at or after ``since``), the unlabelled new rows, and the ids of the events
    left out because they were archived in conflicting copies."""

    table: pa.Table
    is_new: np.ndarray
    unlabelled: pa.Table
    strategy: str
    since: datetime | None
    rows_considered: int
    conflicting: tuple[str, ...] = field(default=())

    @property
    def labelled(self) -> int:
        return len(self.table)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the training record."""
        return {
            "strategy": self.strategy,
            "since": None if self.since is None else self.since.isoformat(),
            "rows_considered": self.rows_considered,
            "labelled": self.labelled,
            "labelled_new": int(self.is_new.sum()),
            "unlabelled_new": len(self.unlabelled),
            "conflicting_duplicates": len(self.conflicting),
            "conflicting_examples": list(self.conflicting[:5]),
        }


def select_training_data(
    archive: Any,
    feature_names: Sequence[str],
    config: SelectionConfig,
    *,
    since: datetime | None,
    task: str = "classification",
) -> Selection:
    """Read the archive and pick the training rows by ``config.strategy``.

    ``archive`` is the store's ``Archive`` of the pipeline (``read_rows``/``read_labels``).
    """
    features = list(feature_names)
    keep = ["event_id", "timestamp", *features]
    if config.strategy == "new" and since is not None:
        checked = archive.read_rows_checked(since=since, last_n=config.max_rows)
    else:
        checked = archive.read_rows_checked(last_n=config.max_rows)
    rows = checked.table.select(keep)
    labelled, unlabelled = join_labels(archive, rows, task)
    is_new = _is_new(labelled, since)
    if len(unlabelled):
        unlabelled = unlabelled.filter(_new_mask(unlabelled, since))
    rng = np.random.default_rng(config.seed)
    if config.strategy == "uniform" and len(labelled) > config.sample_rows:
        pick = np.sort(rng.choice(len(labelled), config.sample_rows, replace=False))
        labelled, is_new = labelled.take(pa.array(pick)), is_new[pick]
    elif config.strategy == "coreset" and since is not None and (~is_new).sum() > 0:
        hist_idx = np.flatnonzero(~is_new)
        x_hist = feature_matrix(labelled.take(pa.array(hist_idx)), features)
        cs = Coreset.from_array(x_hist, k=config.history_coreset_k, seed=config.seed)
        chosen = hist_idx[nearest_rows(cs.points, x_hist)]
        pick = np.sort(np.concatenate([chosen, np.flatnonzero(is_new)]))
        labelled, is_new = labelled.take(pa.array(pick)), is_new[pick]
    return Selection(
        table=labelled,
        is_new=is_new,
        unlabelled=unlabelled,
        strategy=config.strategy,
        since=since,
        rows_considered=len(rows),
        conflicting=tuple(checked.conflicting_ids),
    )


def first_labelled(
    archive: Any, feature_names: Sequence[str], n: int, task: str = "classification"
) -> Selection:
    """The first ``n`` labelled rows of the stream (by time, then id): the bootstrap set.

    Defined by the data alone, so the first champion — and the reference and threshold
    that follow from it — do not depend on when the retrainer happened to look.
    """
    checked = archive.read_rows_checked()
    rows = checked.table.select(["event_id", "timestamp", *feature_names])
    labelled, _ = join_labels(archive, rows, task)
    labelled = labelled.slice(0, n)
    empty = rows.slice(0, 0)
    return Selection(
        table=labelled,
        is_new=np.ones(len(labelled), dtype=bool),
        unlabelled=empty,
        strategy="bootstrap",
        since=None,
        rows_considered=len(rows),
        conflicting=tuple(checked.conflicting_ids),
    )


def informative_event_ids(
    unlabelled: pa.Table, feature_names: Sequence[str], n: int, seed: int = 0
) -> list[str]:
    """Event ids of the ``n`` most informative unlabelled rows: the rows nearest to the
    points of a ``k=n`` core set (greedy k-center spreads them over the whole window,
    outlying regions included).

    >>> t = pa.table({"event_id": ["a", "b", "c", "d"], "x": [0.0, 0.1, 5.0, 5.1]})
    >>> sorted(informative_event_ids(t, ["x"], 2))
    ['a', 'c']
    """
    if len(unlabelled) == 0:
        return []
    ids = unlabelled.column("event_id").to_pylist()
    if len(ids) <= n:
        return [str(i) for i in ids]
    x = feature_matrix(unlabelled, list(feature_names))
    cs = Coreset.from_array(x, k=n, seed=seed)
    order = np.argsort(-cs.weights, kind="stable")
    return [str(ids[i]) for i in nearest_rows(cs.points[order], x)]


def nearest_rows(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each point, the index of a distinct nearest row of ``x`` (first come, first served).

    >>> nearest_rows(np.array([[0.0], [0.0]]), np.array([[0.0], [0.1], [9.0]])).tolist()
    [0, 1]
    """
    taken = np.zeros(len(x), dtype=bool)
    out: list[int] = []
    sq = np.einsum("ij,ij->i", x, x)
    for p in points[: len(x)]:
        best_d, best_i = np.inf, -1
        for start in range(0, len(x), _DIST_BLOCK):
            block = slice(start, start + _DIST_BLOCK)
            d = sq[block] - 2.0 * x[block] @ p
            d[taken[block]] = np.inf
            i = int(np.argmin(d))
            if d[i] < best_d:
                best_d, best_i = float(d[i]), start + i
        if best_i >= 0:
            taken[best_i] = True
            out.append(best_i)
    return np.asarray(out, dtype=np.int64)


def join_labels(archive: Any, rows: pa.Table, task: str) -> tuple[pa.Table, pa.Table]:
    if len(rows) == 0:
        return rows.append_column(LABEL, pa.array([], pa.float64())), rows
    labels = archive.read_labels(rows.column("event_id"))
    labels = labels.select(["event_id", LABEL])
    has = pc.is_in(rows.column("event_id"), value_set=labels.column("event_id"))
    unlabelled = rows.filter(pc.invert(has))
    joined = rows.filter(has).join(labels, "event_id", join_type="inner")
    joined = joined.sort_by([("timestamp", "ascending"), ("event_id", "ascending")])
    col = joined.column(LABEL)
    if task == "regression":
        col = pc.cast(col, pa.float64())
    elif (
        pa.types.is_floating(col.type)
        and len(col)
        and bool(pc.all(pc.equal(col, pc.floor(col))).as_py())
    ):
        # Class labels that travelled as JSON numbers: 1.0 is class 1.
        col = pc.cast(col, pa.int64())
    joined = joined.set_column(joined.schema.get_field_index(LABEL), LABEL, col)
    return joined, unlabelled


def _new_mask(table: pa.Table, since: datetime | None) -> pa.ChunkedArray | pa.Array:
    if since is None:
        return pa.array(np.ones(len(table), dtype=bool))
    return pc.greater_equal(
        table.column("timestamp"), pa.scalar(since, table.schema.field("timestamp").type)
    )


def _is_new(table: pa.Table, since: datetime | None) -> np.ndarray:
    if len(table) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(_new_mask(table, since).to_numpy(zero_copy_only=False), dtype=bool)


def feature_matrix(table: pa.Table, features: Sequence[str]) -> np.ndarray:
    """The feature columns of ``table`` as a float64 ``(n, d)`` matrix."""
    return np.column_stack(
        [table.column(f).to_numpy(zero_copy_only=False).astype(np.float64) for f in features]
    )
