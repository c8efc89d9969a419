"""The bootstrap reference of a pipeline: one for every worker, whatever order rows came in.

Before any champion exists, a worker makes the first ``reference_rows`` valid rows it sees
the reference. Two things made that reference depend on chance:

* **Fetch order.** A worker reads its partitions in blocks (one fetch per partition), so the
  same rows reach it in an order that depends on which partition it fetched first — and a
  detector's fit is seeded but not order-free (it splits the reference in two halves by a
  seeded permutation of its *positions*). The same rows in another order gave another
  threshold: one broker run detected a change after 501 rows where the time-ordered rows
  gave 129. `canonical_order` sorts the rows by (event time, partition, offset) first, so
  the same rows always give the same data version and the same fitted detector.
* **Several workers.** Workers that start together each bootstrap from their own partitions'
  rows and would each get their own reference; the pooled chart can merge summaries of one
  reference only. Each bootstrap version is marked (`marker`) and the pipeline's reference is
  the *oldest* marked version (`pipeline_bootstrap`): every worker reads the same answer from
  the lifecycle store and refits to it (`BootstrapWatch` says when to look again), so the
  workers converge on one reference within a few batches of their bootstrap.

>>> import numpy as np
>>> canonical_order(np.array([5, 1, 1]), np.array([0, 1, 0]), np.array([9, 3, 4])).tolist()
[2, 1, 0]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from driftline.lifecycle_store import LifecycleStore

__all__ = [
    "BOOTSTRAP_KEY",
    "SETTLE_S",
    "BootstrapWatch",
    "canonical_order",
    "marker",
    "pipeline_bootstrap",
]

BOOTSTRAP_KEY = "monitor_bootstrap"
"""The key of a bootstrap reference's ``source_offsets`` (the rows' offsets per partition)."""
SETTLE_S = 3.0
"""How long after its own bootstrap a worker keeps checking for an older one (the bootstraps
of workers that started together are all in the store by then)."""
CHECK_EVERY_S = 0.25


def canonical_order(stamps: np.ndarray, partitions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Positions sorting rows by event time, then partition, then offset."""
    return np.lexsort((offsets, partitions, stamps))


def marker(topic: str, partitions: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    """``source_offsets`` of a bootstrap reference: its rows' first and last offset per
    partition of ``topic``, under `BOOTSTRAP_KEY`.

    >>> marker("p.inputs", np.array([1, 0, 1]), np.array([7, 3, 9]))
    {'monitor_bootstrap': {'topic': 'p.inputs', 'offsets': {'0': [3, 3], '1': [7, 9]}}}
    """
    ranges = {
        str(int(p)): [int(offsets[partitions == p].min()), int(offsets[partitions == p].max())]
        for p in np.unique(partitions)
    }
    return {BOOTSTRAP_KEY: {"topic": topic, "offsets": ranges}}


def pipeline_bootstrap(store: LifecycleStore, pipeline: str) -> str | None:
    """The pipeline's bootstrap reference: the oldest data version marked by `marker`
    (ties by id), or None if there is none."""
    marked = [
        dv
        for dv in store.data_versions(pipeline)
        if isinstance(dv.source_offsets, dict) and BOOTSTRAP_KEY in dv.source_offsets
    ]
    if not marked:
        return None
    return min(marked, key=lambda dv: (dv.created_at, dv.id)).id


class BootstrapWatch:
    """When a worker on a bootstrap reference looks for an older one again: every
    `CHECK_EVERY_S` for `SETTLE_S` after its bootstrap, then once more when that ends.

    >>> now = [0.0]
    >>> watch = BootstrapWatch(clock=lambda: now[0])
    >>> watch.due()
    False
    >>> watch.start(); now[0] = 0.3; watch.due(), watch.due()
    (True, False)
    >>> now[0] = 10.0; watch.due(), watch.due()
    (True, False)
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: float | None = None
        self._last = 0.0

    def start(self) -> None:
        """A bootstrap reference was just made here."""
        self._until = self._clock() + SETTLE_S
        self._last = self._clock()

    def due(self) -> bool:
        """Whether to read the store's choice now."""
        if self._until is None:
            return False
        now = self._clock()
        if now >= self._until:
            self._until = None  # the last look
            return True
        if now - self._last >= CHECK_EVERY_S:
            self._last = now
            return True
        return False
