"""Reference mid-ranks of many values at once, by a lookup grid instead of binary search.

``searchsorted`` over a few hundred knots costs ~80 ns per value (a branch mispredicted at
every step), which made rank lookup most of ``FeatureDrift``'s update. Here each feature's
knot range is cut into ``cells`` equal cells, and each cell stores how many knots lie in
earlier cells plus the one distinct knot value inside it (if any) and how often it repeats.
Because the cell of a value is a monotone function of the value, a knot in an earlier cell is
smaller than the value and a knot in a later cell larger, so the exact left and right
insertion points are ``before + repeats * (x > v)`` and ``before + repeats * (x >= v)``: a few
vector operations per batch. Cells holding two or more distinct knots (rare: a few percent
with 8x more cells than knots) fall back to ``searchsorted`` for their values only. Results
are identical to ``np.searchsorted(knots, x, side="left"/"right")``.
"""

from __future__ import annotations

import numpy as np


class RankGrid:
    """Exact left/right insertion points of values into per-feature sorted knots.

    Example:
        >>> knots = np.array([[0.0, 1.0, 1.0, 2.0]])
        >>> lo, hi = RankGrid(knots).insertion_points(np.array([[1.0], [1.5], [-3.0]]))
        >>> lo.ravel().tolist(), hi.ravel().tolist()
        ([1, 3, 0], [3, 3, 0])
    """

    def __init__(self, knots: np.ndarray, cells: int = 4096) -> None:
        self.knots = knots
        d = knots.shape[0]
        self.cells = cells
        self.low = knots[:, 0].copy()
        span = knots[:, -1] - knots[:, 0]
        # A constant feature (span 0) puts every value in one cell, with exact comparisons.
        self.inv = np.where(span > 0, cells / np.where(span > 0, span, 1.0), 0.0)
        # Cell 0 holds values below the knots, the last one values far above them; the knot
        # range takes cells 1..cells + 1 (the top knot itself lands in cell cells + 1).
        n_cells = cells + 3
        self.offset = np.arange(d) * float(n_cells)
        # set here, not on first use: another thread must never see half of them
        self._shift = self.offset + 1.0 - self.low * self.inv
        self._first, self._last = self.offset, self.offset + self.cells + 2.0
        value = np.full((d, n_cells), np.inf)
        before = np.zeros((d, n_cells), dtype=np.int32)
        # -1 marks a cell with two or more distinct knots (exact search needed)
        repeats = np.zeros((d, n_cells), dtype=np.int32)
        kc = self._cells(knots.T).T - self.offset[:, None].astype(np.int64)
        for j in range(d):
            counts = np.bincount(kc[j], minlength=n_cells)
            before[j] = np.concatenate([[0], np.cumsum(counts)[:-1]])
            for c in np.flatnonzero(counts):
                vals = knots[j, kc[j] == c]
                if vals[0] == vals[-1]:
                    value[j, c] = vals[0]
                    repeats[j, c] = len(vals)
                else:
                    repeats[j, c] = -1
        self.value, self.before, self.repeats = value.ravel(), before.ravel(), repeats.ravel()
        # float32 tables of `rank_sums`, built on first use
        self._twice_before: np.ndarray | None = None
        self._repeats32 = np.zeros(0, np.float32)
        self._any_hard = bool((self.repeats < 0).any())
        # tables of `slots`, built on first use
        self._slot_of_cell: np.ndarray | None = None
        self._slot_value = np.zeros(0)
        self._slot_base = np.zeros(0, dtype=np.intp)

    @property
    def width(self) -> int:
        """Distinct values of ``left + right``: ``2 * knots + 1``."""
        return 2 * int(self.knots.shape[1]) + 1

    def _cells(self, x: np.ndarray) -> np.ndarray:
        """Flat table index of each value's cell, shape of ``x`` ``(n, d)``.

        ``x * inv + shift`` clipped to the feature's cells and truncated: the same function
        places the knots, and any monotone one keeps the insertion points exact.
        """
        raw = x * self.inv
        raw += self._shift
        # the values of np.clip (x is finite), without its Python-level wrapper
        np.maximum(raw, self._first, out=raw)
        np.minimum(raw, self._last, out=raw)
        return raw.astype(np.intp)

    def rank_sums(self, x: np.ndarray) -> np.ndarray:
        """``left + right`` insertion points as float32 (exact: at most twice the knots), in
        fewer passes than `insertion_points`: ``2 * before + repeats * ((x > v) + (x >= v))``.
        """
        flat = self._cells(x)
        if self._twice_before is None:
            self._repeats32 = self.repeats.astype(np.float32)
            self._twice_before = (2 * self.before).astype(np.float32)  # last: marks them built
        value = np.take(self.value, flat)
        repeats = np.take(self._repeats32, flat)
        above = (x > value).view(np.uint8)
        above += (x >= value).view(np.uint8)
        out = np.take(self._twice_before, flat)
        out += repeats * above
        if self._any_hard:
            hard = repeats < 0
            if hard.any():
                rows, cols = np.nonzero(hard)
                for j in np.unique(cols):
                    sel = cols == j
                    vals = x[rows[sel], j]
                    out[rows[sel], j] = np.searchsorted(
                        self.knots[j], vals, side="left"
                    ) + np.searchsorted(self.knots[j], vals, side="right")
        return out

    def slots(self, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Each value's *slot* ``3 * (j * (knots + 1) + b) + a``, and the values the slots
        cannot place, as ``(rows, cols, left + right)`` (None when there are none).

        ``b`` is the number of knots in cells before the value's cell; ``a`` is 0, 1 or 2 as
        the value is below, equal to or above knot ``b`` (``(x > v) + (x >= v)``). In a
        cell holding one distinct knot value ``v`` repeated ``r`` times, ``v`` is knot ``b``;
        in an empty cell knot ``b`` is the next larger one (so ``a = 0``); so
        ``left + right = 2 * b + r_b * a`` is a function of the slot (`slot_sums`). Values
        in cells with two distinct knots are searched exactly.
        """
        if self._slot_of_cell is None:
            self._build_slots()
        slot_of_cell = self._slot_of_cell
        assert slot_of_cell is not None
        # per feature, so that the table is small (int16: cache misses dominated the lookup)
        local = slot_of_cell[self._cells(x)]  # fancy indexing gathers faster than np.take
        slot = local + self._slot_base
        hard = None
        if self._any_hard and local.min() < 0:
            where = np.flatnonzero(local < 0)  # few: cells with two knots are rare
            rows, cols = np.divmod(where, x.shape[1])
            vals = x[rows, cols]
            sums = np.empty(len(where), dtype=np.intp)
            for j in np.unique(cols):
                sel = cols == j
                knots = self.knots[j]
                sums[sel] = np.searchsorted(knots, vals[sel], side="left") + np.searchsorted(
                    knots, vals[sel], side="right"
                )
            slot.ravel()[where] = 0  # any valid slot: the caller overwrites these values
            hard = (rows, cols, sums)
        value = np.take(self._slot_value, slot)
        above = (x > value).view(np.uint8)
        above += (x >= value).view(np.uint8)
        slot += above
        return slot, hard

    def slot_sums(self) -> np.ndarray:
        """``left + right`` of each slot, shape ``(d * (knots + 1) * 3,)`` (see `slots`)."""
        d, n_knots = self.knots.shape
        b = np.arange(n_knots + 1)
        # multiplicity of knot b (the knots equal to it all sit in its cell); 0 past the end
        counts = np.zeros((d, n_knots + 1), dtype=np.intp)
        for j in range(d):
            _, inverse, mult = np.unique(self.knots[j], return_inverse=True, return_counts=True)
            counts[j, :n_knots] = mult[inverse]
        a = np.arange(3)
        sums = 2 * b[None, :, None] + counts[:, :, None] * a[None, None, :]
        # slots of a knot inside a run of ties are never used (a cell's b is the run's
        # first knot); they only need to stay in range
        return np.minimum(sums, 2 * n_knots).ravel()

    def _build_slots(self) -> None:
        d, n_knots = self.knots.shape
        n_cells = self.cells + 3
        local = 3 * self.before.reshape(d, n_cells).astype(np.int64)
        local[self.repeats.reshape(d, n_cells) < 0] = -1
        dtype = np.int16 if 3 * n_knots < 2**15 else np.int32
        self._slot_base = np.arange(d, dtype=np.intp) * (3 * (n_knots + 1))
        padded = np.concatenate([self.knots, np.full((d, 1), np.inf)], axis=1)
        self._slot_value = np.repeat(padded.ravel(), 3)
        self._slot_of_cell = local.ravel().astype(dtype)  # last: it marks the tables built

    def insertion_points(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``searchsorted(knots[j], x[:, j], side)`` for left and right, shape ``(n, d)``."""
        flat = self._cells(x)
        value = np.take(self.value, flat)
        before = np.take(self.before, flat)
        repeats = np.take(self.repeats, flat)
        lo = before + repeats * (x > value)
        hi = before + repeats * (x >= value)
        hard = repeats < 0
        if hard.any():
            rows, cols = np.nonzero(hard)
            for j in np.unique(cols):
                sel = cols == j
                vals = x[rows[sel], j]
                lo[rows[sel], j] = np.searchsorted(self.knots[j], vals, side="left")
                hi[rows[sel], j] = np.searchsorted(self.knots[j], vals, side="right")
        return lo, hi
