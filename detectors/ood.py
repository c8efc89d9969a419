"""OODScorer: per-event out-of-distribution score against a reference core set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftline.detectors._kernels import sqdist
from driftline.detectors._serialization import pack, unpack
from driftline.detectors._validation import as_matrix, check_feature_names, check_positive_int
from driftline.detectors.coreset import Coreset
from driftline.detectors.exceptions import InvalidInputError, NotFittedError

__all__ = ["OODScorer"]

_MIN_REFERENCE = 20
_CHUNK = 4096


class OODScorer:
    """Distance of each event to the nearest reference core point, over the covering radius.

    ``fit`` builds a :class:`~driftline.detectors.Coreset` of ``k`` points from a seeded half of the
    reference and measures its exact covering radius on that half, so every row of it
    scores <= 1. The other half is held out: the default flag threshold is the
    ``quantile`` (0.999 by default) of held-out scores, i.e. about 1 in 1000 fresh
    in-distribution events is flagged. Scores are in the reference's units, so rescale
    features beforehand if their scales differ wildly.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> scorer = OODScorer(k=64, seed=0).fit(rng.normal(size=(2000, 2)))
        >>> scorer.flags(np.array([[0.0, 0.0], [9.0, 9.0]])).tolist()
        [False, True]
    """

    def __init__(self, k: int = 256, seed: int = 0, quantile: float = 0.999) -> None:
        self.k = k
        self.seed = seed
        self.quantile = quantile
        self._points: np.ndarray | None = None
        self._radius = 1.0
        self._threshold = np.inf
        self._feature_names: tuple[str, ...] = ()

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters: ``OODScorer(**s.get_params())`` is an unfitted clone."""
        return {"k": self.k, "seed": self.seed, "quantile": self.quantile}

    @property
    def threshold(self) -> float:
        """Default score above which :meth:`flags` marks an event."""
        self._require_fitted()
        return float(self._threshold)

    @property
    def radius(self) -> float:
        """Covering radius of the core set over the fitted rows."""
        return self._radius

    @property
    def n_features(self) -> int:
        """Columns of the reference (0 before fit)."""
        return 0 if self._points is None else int(self._points.shape[1])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names given to ``fit`` (or "x0", "x1", ...)."""
        return self._feature_names

    def fit(self, reference: np.ndarray, feature_names: Sequence[str] | None = None) -> OODScorer:
        """Summarize the reference and calibrate the default threshold; returns ``self``."""
        check_positive_int("k", self.k, "core points kept from the reference")
        if not 0.0 < float(self.quantile) < 1.0:
            raise InvalidInputError(
                f"quantile must be in (0, 1), e.g. 0.999 to flag ~1 in 1000 normal events, "
                f"got {self.quantile!r}"
            )
        x = as_matrix(reference, "reference", allow_row=False)
        if x.shape[0] < _MIN_REFERENCE:
            raise InvalidInputError(
                f"reference has {x.shape[0]} rows; pass at least {_MIN_REFERENCE} "
                "(half are held out to calibrate the threshold)"
            )
        self._feature_names = check_feature_names(feature_names, x.shape[1])
        order = np.random.default_rng(self.seed).permutation(len(x))
        half = len(x) // 2
        fit_rows, hold_rows = x[order[:half]], x[order[half:]]
        self._points = Coreset.from_array(fit_rows, k=self.k, seed=self.seed).points
        self._radius = 1.0
        radius = float(self._nearest(fit_rows).max())
        self._radius = radius if radius > 0 else 1.0
        self._threshold = float(np.quantile(self.score(hold_rows), self.quantile, method="higher"))
        return self

    def score(self, batch: np.ndarray) -> np.ndarray:
        """OOD score of each row: nearest core-point distance / covering radius."""
        self._require_fitted()
        x = as_matrix(batch, "batch", self.n_features)
        return self._nearest(x) / self._radius

    def flags(self, batch: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Boolean per row: score above ``threshold`` (default: the calibrated one)."""
        limit = self.threshold if threshold is None else float(threshold)
        return np.asarray(self.score(batch) > limit)

    def _nearest(self, x: np.ndarray) -> np.ndarray:
        assert self._points is not None
        out = np.empty(len(x))
        for i in range(0, len(x), _CHUNK):
            out[i : i + _CHUNK] = np.sqrt(sqdist(x[i : i + _CHUNK], self._points).min(axis=1))
        return out

    def _require_fitted(self) -> None:
        if self._points is None:
            raise NotFittedError("OODScorer is not fitted; call fit(reference) before scoring")

    def to_bytes(self) -> bytes:
        """Pickle-free snapshot; inverse of :meth:`from_bytes`."""
        header = {
            "kind": "OODScorer",
            "params": self.get_params(),
            "radius": self._radius,
            "threshold": self._threshold if self._points is not None else None,
            "feature_names": list(self._feature_names),
            "fitted": self._points is not None,
        }
        arrays = {"points": self._points} if self._points is not None else {}
        return pack(header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> OODScorer:
        """Restore a scorer written by :meth:`to_bytes`."""
        header, arrays = unpack(data)
        if header.get("kind") != "OODScorer":
            raise InvalidInputError(
                f"bytes hold a {header.get('kind')!r}, not an OODScorer; "
                "use the matching from_bytes"
            )
        out = cls(**header["params"])
        if header["fitted"]:
            out._points = arrays["points"]
            out._radius = float(header["radius"])
            out._threshold = float(header["threshold"])
            out._feature_names = tuple(header["feature_names"])
        return out

    def __repr__(self) -> str:
        return f"OODScorer(k={self.k}, seed={self.seed}, quantile={self.quantile})"
