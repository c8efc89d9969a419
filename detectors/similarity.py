"""Dataset similarity from core sets: weighted-coreset MMD and its full-data baseline.

All three functions use the Gaussian kernel ``k(x, y) = exp(-|x - y|^2 / (2 * bandwidth^2))``
and the biased (V-statistic) squared MMD, so values are >= 0 and comparable between the
core-set and full-data versions. With ``bandwidth=None`` the median heuristic is used: the
(weighted) median distance between pooled rows, computed deterministically from the inputs.
"""

from __future__ import annotations

import numpy as np

from driftline.detectors._kernels import sqdist, weighted_median_distance
from driftline.detectors._validation import as_matrix
from driftline.detectors.coreset import Coreset
from driftline.detectors.exceptions import InvalidInputError

__all__ = ["SIMILARITY_SCALE", "exact_mmd2", "mmd2", "similarity"]

# MMD^2 that maps to similarity 1/e. Under the median-heuristic Gaussian kernel, two mixtures
# of the same classes in clearly different proportions are ~0.005 apart (digits, d=64), so
# similarities spread over (0, 1] for the shifts that matter when choosing a past lifecycle.
SIMILARITY_SCALE = 0.01
_EXACT_BLOCK = 2048
_BANDWIDTH_SAMPLE = 1000


def similarity(a: Coreset, b: Coreset, bandwidth: float | None = None) -> float:
    """Similarity in (0, 1] of two core sets: ``exp(-mmd2(a, b) / SIMILARITY_SCALE)``.

    1 means the same distribution (identical core sets give exactly 1). Symmetric.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a = Coreset.from_array(rng.normal(size=(2000, 4)), k=64)
        >>> a2 = Coreset.from_array(rng.normal(size=(2000, 4)), k=64)
        >>> b = Coreset.from_array(rng.normal(1.0, 1.0, size=(2000, 4)), k=64)
        >>> similarity(a, a)
        1.0
        >>> similarity(a, a2) > similarity(a, b)
        True
    """
    return float(np.exp(-mmd2(a, b, bandwidth) / SIMILARITY_SCALE))


def mmd2(a: Coreset, b: Coreset, bandwidth: float | None = None) -> float:
    """Squared MMD between the weighted core sets (weights normalized to sum to 1)."""
    pa, wa = _coreset_parts(a, "a")
    pb, wb = _coreset_parts(b, "b")
    if pa.shape[1] != pb.shape[1]:
        raise InvalidInputError(
            f"core sets have {pa.shape[1]} and {pb.shape[1]} features; "
            "compare sketches of the same columns"
        )
    pts = np.concatenate([pa, pb])
    d2 = sqdist(pts, pts)
    if bandwidth is None:
        bandwidth = weighted_median_distance(pts, np.concatenate([wa, wb]) / 2.0, d2)
    kernel = np.exp(-_gamma(bandwidth) * d2)
    na = len(pa)
    kaa = wa @ kernel[:na, :na] @ wa
    kbb = wb @ kernel[na:, na:] @ wb
    kab = wa @ kernel[:na, na:] @ wb
    return max(float(kaa + kbb - 2.0 * kab), 0.0)


def exact_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Squared MMD on the full data (V-statistic), in blocks so ``n = 100k`` fits in memory.

    The baseline the core-set :func:`mmd2` approximates; cost ``O(n^2 d)``.
    """
    xa = as_matrix(x, "x", allow_row=False)
    ya = as_matrix(y, "y", xa.shape[1], allow_row=False)
    if bandwidth is None:
        rng = np.random.default_rng(0)
        sub = [
            arr[rng.choice(len(arr), min(len(arr), _BANDWIDTH_SAMPLE // 2), replace=False)]
            for arr in (xa, ya)
        ]
        pooled = np.concatenate(sub)
        bandwidth = weighted_median_distance(pooled, np.full(len(pooled), 1.0 / len(pooled)))
    gamma = _gamma(bandwidth)
    xs, ys = xa.astype(np.float32), ya.astype(np.float32)
    kxx = _block_kernel_sum(xs, xs, gamma, symmetric=True) / len(xs) ** 2
    kyy = _block_kernel_sum(ys, ys, gamma, symmetric=True) / len(ys) ** 2
    kxy = _block_kernel_sum(xs, ys, gamma, symmetric=False) / (len(xs) * len(ys))
    return max(float(kxx + kyy - 2.0 * kxy), 0.0)


def _coreset_parts(c: Coreset, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(c, Coreset):
        raise InvalidInputError(f"{name} must be a Coreset, got {type(c).__name__}")
    if c.n_seen == 0:
        raise InvalidInputError(f"core set {name} is empty; update it with data first")
    w = c.weights
    return c.points, w / w.sum()


def _gamma(bandwidth: float) -> float:
    if not np.isfinite(bandwidth) or bandwidth <= 0:
        raise InvalidInputError(
            f"bandwidth must be a finite number > 0, got {bandwidth!r}; "
            "pass None for the median heuristic"
        )
    return 1.0 / (2.0 * float(bandwidth) ** 2)


def _block_kernel_sum(x: np.ndarray, y: np.ndarray, gamma: float, symmetric: bool) -> float:
    # float32 blocks: the exp dominates and runs several times faster vectorized in float32;
    # each block sum is accumulated in float64.
    total = 0.0
    sy = np.einsum("ij,ij->i", y, y)
    for i in range(0, len(x), _EXACT_BLOCK):
        xb = x[i : i + _EXACT_BLOCK]
        sx = np.einsum("ij,ij->i", xb, xb)
        j0 = i if symmetric else 0
        yb, syb = y[j0:], sy[j0:]
        d2 = sx[:, None] - 2.0 * (xb @ yb.T) + syb[None, :]
        np.maximum(d2, 0.0, out=d2)
        np.multiply(d2, -gamma, out=d2)
        np.exp(d2, out=d2)
        if symmetric:
            # Block rows i.., columns i..: the square diagonal block counts once, the rest twice.
            nb = len(xb)
            diag = float(d2[:, :nb].sum(dtype=np.float64))
            total += diag + 2.0 * float(d2[:, nb:].sum(dtype=np.float64))
        else:
            total += float(d2.sum(dtype=np.float64))
    return total
