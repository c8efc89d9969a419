"""The value every detector's ``update`` returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftline.detectors._serialization import pack, unpack
from driftline.detectors.exceptions import InvalidInputError

__all__ = ["DriftResult", "PartialState"]


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one ``update(batch)``.

    ``drift`` is True when the statistic crossed ``threshold`` at some row of this batch, and
    ``index`` is the first such row (None otherwise). ``statistic`` is the value at that row,
    or at the last row when there was no alarm. ``features`` ranks ``(name, score)`` pairs by
    contribution, largest first. ``changes`` (detectors that tell kinds apart) ranks
    ``(what, kind, score)`` with kind ``"mean"``, ``"variance"`` or ``"dependence"`` (then
    ``what`` names a pair, ``"a*b"``).

    Scores are on one bounded scale, ``s / (s + 1)`` in [0, 1), where ``s`` is the recent
    window's squared standardized shift divided by its 99% no-drift quantile: 0.5 means "as
    far as one no-drift window in a hundred goes", 0.9 nine times that.

    Example:
        >>> r = DriftResult(drift=True, index=3, statistic=9.5, threshold=7.0,
        ...                 features=(("age", 5.0), ("income", 0.1)))
        >>> r.features[0][0]
        'age'
    """

    drift: bool
    index: int | None
    statistic: float
    threshold: float
    features: tuple[tuple[str, float], ...]
    changes: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True, eq=False)
class PartialState:
    """Sufficient statistics of a batch for a detector's chart: mergeable across partitions.

    ``features`` are the rows' feature map (centered on the reference), ``rows`` the
    validated input rows (for attribution and the accuracy estimate). Summaries of several
    partitions merge by feeding them to one detector in arrival order
    (``detector.merge(p)``): the chart then runs over the pipeline's rows, so its false-alarm
    rate is the requested one and its delay in total rows does not depend on how many
    partitions the rows came through. ``to_bytes`` is pickle-free (for a topic or a table).

    Example:
        >>> import numpy as np
        >>> from driftline.detectors import OnlineMMD
        >>> det = OnlineMMD(ert=1000, window=100, n_simulated=50_000)
        >>> det = det.fit(np.random.default_rng(0).normal(size=(800, 2)))
        >>> part = det.partial_state(np.zeros((5, 2)))
        >>> PartialState.from_bytes(part.to_bytes()).features.shape == part.features.shape
        True
    """

    features: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def to_bytes(self) -> bytes:
        """Pickle-free bytes (see ``from_bytes``)."""
        return pack({"kind": "PartialState"}, {"features": self.features, "rows": self.rows})

    @classmethod
    def from_bytes(cls, data: bytes) -> PartialState:
        """Inverse of ``to_bytes``; rejects anything else."""
        header, arrays = unpack(data)
        if header.get("kind") != "PartialState" or set(arrays) != {"features", "rows"}:
            raise InvalidInputError("bytes do not hold a PartialState; pass to_bytes() output")
        features, rows = arrays["features"], arrays["rows"]
        if (
            features.ndim != 2
            or rows.ndim != 2
            or len(features) != len(rows)
            or not np.issubdtype(features.dtype, np.floating)
            or rows.dtype != np.float64
        ):
            raise InvalidInputError(
                f"PartialState arrays have shapes {features.shape} and {rows.shape}; "
                "expected (n, map_dim) floats and (n, d) float64 rows"
            )
        if not (np.isfinite(features).all() and np.isfinite(rows).all()):
            raise InvalidInputError("PartialState holds NaN or inf")
        return cls(features=features, rows=rows)
