"""Distance helpers shared by similarity, the MMD detector and the OOD scorer."""

from __future__ import annotations

import numpy as np


def sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, shape ``(len(x), len(y))``, clipped at 0."""
    d2 = np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * x @ y.T + np.einsum("ij,ij->i", y, y)[None, :]
    return np.maximum(d2, 0.0)


def weighted_median_distance(
    pts: np.ndarray, wts: np.ndarray, d2: np.ndarray | None = None
) -> float:
    """Median of pairwise distances (i != j) with pair weight ``w_i * w_j``; 1.0 if all equal.

    ``d2`` may pass the already computed squared distances of ``pts``.
    """
    iu, ju = np.triu_indices(len(pts), k=1)
    if iu.size == 0:
        return 1.0
    dist = np.sqrt((sqdist(pts, pts) if d2 is None else d2)[iu, ju])
    pw = wts[iu] * wts[ju]
    med = _weighted_median(dist, pw)
    return med if med > 0 else 1.0


def _weighted_median(values: np.ndarray, weights: np.ndarray, bins: int = 1024) -> float:
    """Smallest value whose cumulative weight reaches half the total.

    A weighted histogram finds the bin holding the median; only that bin is sorted, which
    keeps this linear in the number of values instead of a full sort.
    """
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    index = np.minimum(((values - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    cum = np.cumsum(np.bincount(index, weights=weights, minlength=bins))
    half = cum[-1] / 2.0
    k = int(np.searchsorted(cum, half))
    inside = index == k
    before = cum[k - 1] if k > 0 else 0.0
    order = np.argsort(values[inside], kind="stable")
    within = np.cumsum(weights[inside][order]) + before
    pos = min(int(np.searchsorted(within, half)), len(order) - 1)
    return float(values[inside][order][pos])


def median_distance(x: np.ndarray, rng: np.random.Generator, max_rows: int = 1000) -> float:
    """Median heuristic bandwidth from at most ``max_rows`` rows drawn with ``rng``."""
    rows = x if len(x) <= max_rows else x[rng.choice(len(x), max_rows, replace=False)]
    return weighted_median_distance(rows, np.full(len(rows), 1.0 / len(rows)))
