"""Drift injection: make a known change to a stream at a known row (pure numpy).

Used by ``driftline replay --inject`` and by the demo, so detection can be checked against the
truth. Rows before ``start`` are never touched; the statistics that scale a change (means,
standard deviations, quantiles) come from those rows, so ``magnitude`` is in units of the
clean data.

``shift``
    add ``magnitude`` standard deviations to the chosen features.
``scale``
    stretch the chosen features around their mean by ``1 + magnitude``.
``noise``
    add Gaussian noise of ``magnitude`` standard deviations.
``correlation``
    change how pairs of features move together while every feature keeps exactly its values
    (a per-feature test cannot see it): within the drifted rows the values of the second
    feature of each pair are re-ordered to follow the first one's ranks with strength
    ``magnitude`` in [-1, 1].
``subpopulation``
    over-represent one part of the population: the drifted rows are re-drawn (with their
    labels) so that a fraction ``magnitude`` of them lies above the clean median of the first
    chosen feature, instead of one half.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(1000, 3))
>>> out = inject(x, "shift", start=500, magnitude=2.0, features=[0])
>>> bool(np.all(out[:500] == x[:500])), round(float(out[500:, 0].mean() - x[500:, 0].mean()), 1)
(True, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args, overload

import numpy as np

__all__ = ["KINDS", "inject"]

Kind = Literal["shift", "scale", "noise", "correlation", "subpopulation"]
KINDS: tuple[str, ...] = get_args(Kind)


@overload
def inject(
    x: np.ndarray,
    kind: str,
    start: int,
    magnitude: float,
    features: Sequence[int] | None = None,
    seed: int = 0,
    y: None = None,
) -> np.ndarray: ...


@overload
def inject(
    x: np.ndarray,
    kind: str,
    start: int,
    magnitude: float,
    features: Sequence[int] | None = None,
    seed: int = 0,
    *,
    y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]: ...


def inject(
    x: np.ndarray,
    kind: str,
    start: int,
    magnitude: float,
    features: Sequence[int] | None = None,
    seed: int = 0,
    y: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A copy of ``x`` (rows, features) with ``kind`` drift from row ``start`` on.

    ``features`` are column indices (default: the first half of the columns, at least one;
    for ``correlation`` consecutive pairs of them, default the first two). With labels ``y``
    the result is ``(x', y')``; only ``subpopulation`` changes labels (they move with their
    rows).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty 2-d array (rows, features), got shape {x.shape}")
    if kind not in KINDS:
        raise ValueError(f"unknown drift kind {kind!r}; use one of {list(KINDS)}")
    if not 0 < start < x.shape[0]:
        raise ValueError(
            f"start={start} must leave clean rows before it and drifted rows after it: "
            f"use 1 <= start < {x.shape[0]}"
        )
    if y is not None and len(y) != len(x):
        raise ValueError(f"y has {len(y)} labels for {len(x)} rows; pass one label per row")
    d = x.shape[1]
    cols = list(features) if features is not None else _default_features(kind, d)
    bad = [c for c in cols if not 0 <= c < d]
    if bad or not cols:
        raise ValueError(f"features {cols} must be column indices in [0, {d}); got {bad or cols}")
    rng = np.random.default_rng(seed)
    clean = x[:start]
    out = x.copy()
    y_out = None if y is None else np.array(y, copy=True)
    tail = out[start:]
    mean, std = clean.mean(axis=0), clean.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    if kind == "shift":
        tail[:, cols] += magnitude * std[cols]
    elif kind == "scale":
        tail[:, cols] = mean[cols] + (tail[:, cols] - mean[cols]) * (1.0 + magnitude)
    elif kind == "noise":
        tail[:, cols] += rng.normal(size=(len(tail), len(cols))) * magnitude * std[cols]
    elif kind == "correlation":
        _correlate(tail, cols, magnitude, rng)
    else:
        picked = _subpopulation(clean, tail, cols[0], magnitude, rng)
        out[start:] = tail[picked]
        if y_out is not None:
            y_out[start:] = y_out[start:][picked]
    return out if y_out is None else (out, y_out)


def _default_features(kind: str, d: int) -> list[int]:
    if kind == "correlation":
        if d < 2:
            raise ValueError("a correlation change needs at least 2 features")
        return [0, 1]
    return list(range(max(1, d // 2)))


def _correlate(tail: np.ndarray, cols: list[int], rho: float, rng: np.random.Generator) -> None:
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"correlation magnitude must lie in [-1, 1], got {rho}")
    if len(cols) < 2 or len(cols) % 2:
        raise ValueError(f"correlation needs pairs of features, got {cols}")
    n = len(tail)
    for a, b in zip(cols[::2], cols[1::2], strict=True):
        # `a` standardized plus independent noise decides the order; the values of `b` are
        # only re-ordered, so its marginal distribution is exactly unchanged.
        z_a = (tail[:, a] - tail[:, a].mean()) / (tail[:, a].std() or 1.0)
        score = rho * z_a + np.sqrt(1.0 - rho**2) * rng.normal(size=n)
        order = np.argsort(score)
        values = np.sort(tail[:, b])
        tail[order, b] = values


def _subpopulation(
    clean: np.ndarray, tail: np.ndarray, col: int, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"subpopulation magnitude is a fraction in [0, 1], got {fraction}")
    median = np.median(clean[:, col])
    above = np.flatnonzero(tail[:, col] > median)
    below = np.flatnonzero(tail[:, col] <= median)
    if above.size == 0 or below.size == 0:
        raise ValueError(
            f"feature {col} has no rows on one side of its clean median after start; "
            "choose another feature or start row"
        )
    n = len(tail)
    n_above = round(fraction * n)
    picked = np.concatenate(
        [rng.choice(above, size=n_above, replace=True), rng.choice(below, size=n - n_above)]
    )
    picked.sort()
    return picked
