"""Whitening of feature maps (so each statistic is a Hotelling-type norm)."""

from __future__ import annotations

import numpy as np

# Directions with less variance than this fraction of the largest are not blown up: they are
# estimated too poorly to trust, and on real data they are often exactly constant.
_EIG_FLOOR = 1e-2


def whitening(z: np.ndarray, floor: float = _EIG_FLOOR) -> np.ndarray:
    """Symmetric inverse square root of the covariance of the rows of ``z``: eigenvalues are
    held at or above ``floor`` times the largest (regularized)."""
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    vals, vecs = np.linalg.eigh(cov)
    top = float(vals.max()) if vals.size and vals.max() > 0 else 1.0
    vals = np.maximum(vals, floor * top)
    return np.asarray((vecs / np.sqrt(vals)) @ vecs.T)


def standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales; constant columns keep scale 1 (their raw units)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)
