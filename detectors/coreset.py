"""Streaming, mergeable, bounded-memory weighted core sets (VeML-style dataset summaries)."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.detectors._serialization import pack, unpack
from driftline.detectors._validation import as_matrix, check_positive_int
from driftline.detectors.exceptions import InvalidInputError

__all__ = ["Coreset"]

# Rows reduced at once: large enough to amortize numpy overhead, small enough that the working
# set stays a few k-sized blocks however large the incoming batch is.
_CHUNK_FACTOR = 4

_LIMIT = 1e100
"""Coordinates are clipped to +-_LIMIT: squared distances of points within it stay finite in
float64 (one hostile 1e300 overflowed ``|x|^2`` to inf, and the farthest-first traversal, the
centroids and the similarity search on the sketch to NaN). No real feature comes near it."""


class Coreset:
    """A weighted core set of a stream: at most ``k`` points whose weights sum to ``n_seen``.

    **Choice: merge-and-reduce over greedy k-center** (farthest-first traversal), not
    sensitivity sampling. The core set serves two users: out-of-distribution scoring needs a
    *covering radius* (every row seen lies within ``radius`` of some core point), which
    k-center bounds deterministically (2-approximation per reduce step) while sampling gives
    no such guarantee for rare far rows; and dataset similarity needs the kernel mean
    embedding, which a quantization approximates with an error bounded by the mean distance of
    rows to their core point. Each reduce step therefore *partitions* rows with greedy
    k-center and represents each cell by the weighted mean of its members (the cell's mass
    sits at its centroid, so the core set's mean equals the stream's mean exactly), and keeps
    a per-point radius bound ``max(member distance + member radius)`` so that ``radius``
    remains a valid covering radius through any sequence of updates and merges. Sampling
    would be cheaper per row, but its error on the mean embedding decays only as
    ``1/sqrt(k)`` and is random; the partition is deterministic given the seed and the input
    order, which keeps stored data versions reproducible.

    Memory is ``O(k * d)`` however long the stream: batches are reduced in chunks of
    ``4 * k`` rows, so the cost per row is ``O(k * d)``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> cs = Coreset(k=32, seed=0).update(rng.normal(size=(1000, 3)))
        >>> cs.points.shape[0] <= 32, float(cs.weights.sum()), cs.n_seen
        (True, 1000.0, 1000)
        >>> merged = cs.merge(Coreset.from_array(rng.normal(size=(500, 3)), k=32))
        >>> merged.n_seen
        1500
        >>> Coreset.from_bytes(merged.to_bytes()).n_seen
        1500
    """

    def __init__(self, k: int = 256, seed: int = 0) -> None:
        self.k = check_positive_int("k", k, "maximum number of core points")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InvalidInputError(f"seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        self._points: np.ndarray | None = None
        self._weights = np.zeros(0)
        self._radii = np.zeros(0)
        self._n_seen = 0
        self._n_reduces = 0

    @classmethod
    def from_array(cls, x: np.ndarray, k: int = 256, seed: int = 0) -> Coreset:
        """Build the core set of a whole array (same as ``Coreset(k, seed).update(x)``)."""
        return cls(k=k, seed=seed).update(x)

    # ------------------------------------------------------------------ properties
    @property
    def points(self) -> np.ndarray:
        """Core points, shape ``(m, d)`` with ``m <= k`` (``(0, 0)`` before any update)."""
        if self._points is None:
            return np.zeros((0, 0))
        return self._points.copy()

    @property
    def weights(self) -> np.ndarray:
        """Number of rows each core point stands for; sums to ``n_seen``."""
        return self._weights.copy()

    @property
    def radius(self) -> float:
        """Covering radius: every row seen is within this distance of some core point."""
        return float(self._radii.max()) if self._radii.size else 0.0

    @property
    def n_seen(self) -> int:
        """Rows summarized so far."""
        return self._n_seen

    @property
    def dim(self) -> int | None:
        """Number of features, or None before the first update."""
        return None if self._points is None else int(self._points.shape[1])

    # ------------------------------------------------------------------ updates
    def update(self, batch: np.ndarray) -> Coreset:
        """Add rows (``(b, d)`` or a single row ``(d,)``); returns ``self``."""
        x = np.clip(as_matrix(batch, "batch", self.dim), -_LIMIT, _LIMIT)
        chunk = _CHUNK_FACTOR * self.k
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            self._absorb(part, np.ones(part.shape[0]), np.zeros(part.shape[0]))
        self._n_seen += x.shape[0]
        return self

    def merge(self, other: Coreset) -> Coreset:
        """A new core set of both streams (keeps ``self.k`` and ``self.seed``)."""
        if not isinstance(other, Coreset):
            raise InvalidInputError(f"can only merge a Coreset, got {type(other).__name__}")
        if self.dim is not None and other.dim is not None and self.dim != other.dim:
            raise InvalidInputError(
                f"cannot merge core sets of {self.dim} and {other.dim} features; "
                "merge sketches of the same columns"
            )
        out = Coreset(k=self.k, seed=self.seed)
        out._n_reduces = self._n_reduces + other._n_reduces
        for src in (self, other):
            if src._points is not None:
                out._absorb(src._points, src._weights, src._radii)
        out._n_seen = self._n_seen + other._n_seen
        return out

    def _absorb(self, pts: np.ndarray, wts: np.ndarray, rad: np.ndarray) -> None:
        if self._points is None:
            allp, allw, allr = pts, wts, rad
        else:
            allp = np.concatenate([self._points, pts])
            allw = np.concatenate([self._weights, wts])
            allr = np.concatenate([self._radii, rad])
        if allp.shape[0] > self.k:
            rng = np.random.default_rng([self.seed, self._n_reduces])
            allp, allw, allr = _reduce(allp, allw, allr, self.k, rng)
            self._n_reduces += 1
        self._points, self._weights, self._radii = allp, allw, allr

    # ------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        """Pickle-free serialization; inverse of :meth:`from_bytes`."""
        header: dict[str, Any] = {
            "kind": "Coreset",
            "k": self.k,
            "seed": self.seed,
            "n_seen": self._n_seen,
            "n_reduces": self._n_reduces,
            "empty": self._points is None,
        }
        arrays = {"points": self.points, "weights": self._weights, "radii": self._radii}
        return pack(header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> Coreset:
        """Restore a core set written by :meth:`to_bytes`."""
        header, arrays = unpack(data)
        if header.get("kind") != "Coreset":
            raise InvalidInputError(
                f"bytes hold a {header.get('kind')!r}, not a Coreset; use the matching from_bytes"
            )
        out = cls(k=header["k"], seed=header["seed"])
        out._n_seen = int(header["n_seen"])
        out._n_reduces = int(header["n_reduces"])
        if not header["empty"]:
            # A sketch an older release wrote may hold inf or NaN from an extreme row.
            out._points = np.clip(np.nan_to_num(arrays["points"]), -_LIMIT, _LIMIT)
            out._weights = arrays["weights"]
            out._radii = np.clip(np.nan_to_num(arrays["radii"]), 0.0, 4.0 * _LIMIT)
        return out

    def __repr__(self) -> str:
        m = 0 if self._points is None else self._points.shape[0]
        return f"Coreset(k={self.k}, seed={self.seed}, points={m}, n_seen={self._n_seen})"


def _reduce(
    pts: np.ndarray, wts: np.ndarray, rad: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partition weighted points into <= k cells by farthest-first traversal.

    Farthest is measured by the covering bound ``distance + radius`` so that a point that
    already stands for a wide cell is preferred as a new center.
    """
    m = pts.shape[0]
    sq = np.einsum("ij,ij->i", pts, pts)
    first = int(rng.integers(m))
    d2 = np.maximum(sq - 2.0 * pts @ pts[first] + sq[first], 0.0)
    assign = np.zeros(m, dtype=np.int64)
    n_centers = 1
    d2[first] = 0.0
    for j in range(1, k):
        # A point already sitting on a center cannot lower the bound by becoming one.
        cover = np.where(d2 > 0.0, np.sqrt(d2) + rad, 0.0)
        nxt = int(np.argmax(cover))
        if cover[nxt] <= 0.0:
            break
        new = np.maximum(sq - 2.0 * pts @ pts[nxt] + sq[nxt], 0.0)
        new[nxt] = 0.0
        closer = new < d2
        d2 = np.where(closer, new, d2)
        assign[closer] = j
        n_centers = j + 1
    weight = np.bincount(assign, weights=wts, minlength=n_centers)
    centroid = np.zeros((n_centers, pts.shape[1]))
    np.add.at(centroid, assign, pts * wts[:, None])
    centroid /= weight[:, None]
    dist = np.linalg.norm(pts - centroid[assign], axis=1) + rad
    radius = np.zeros(n_centers)
    np.maximum.at(radius, assign, dist)
    return centroid, weight, radius
