"""The value every detector's ``update`` returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DriftResult"]


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one ``update(batch)``.

    ``drift`` is True when the statistic crossed ``threshold`` at some row of this batch, and
    ``index`` is the first such row (None otherwise). ``statistic`` is the value at that row,
    or at the last row when there was no alarm. ``features`` ranks ``(name, score)`` pairs by
    contribution, largest first.

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
