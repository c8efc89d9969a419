"""Distance helpers shared by similarity, the MMD detector and the OOD scorer."""

from __future__ import annotations

import numpy as np


def sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, shape ``(len(x), len(y))``, clipped at 0."""
    d2 = np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * x @ y.T + np.einsum("ij,ij->i", y, y)[None, :]
    return np.maximum(d2, 0.0)


def weighted_median_distance(pts: np.ndarray, wts: np.ndarray) -> float:
    """Median of pairwise distances (i != j) with pair weight ``w_i * w_j``; 1.0 if all equal."""
    iu, ju = np.triu_indices(len(pts), k=1)
    if iu.size == 0:
        return 1.0
    dist = np.sqrt(sqdist(pts, pts)[iu, ju])
    pw = wts[iu] * wts[ju]
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(pw[order])
    med = float(dist[order][np.searchsorted(cum, cum[-1] / 2.0)])
    return med if med > 0 else 1.0


def median_distance(x: np.ndarray, rng: np.random.Generator, max_rows: int = 1000) -> float:
    """Median heuristic bandwidth from at most ``max_rows`` rows drawn with ``rng``."""
    rows = x if len(x) <= max_rows else x[rng.choice(len(x), max_rows, replace=False)]
    return weighted_median_distance(rows, np.full(len(rows), 1.0 / len(rows)))
