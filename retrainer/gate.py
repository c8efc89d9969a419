"""Champion/challenger gate (Scanflow): deploy only a model that is better on the new data.

Both models are scored row by row on the same holdout: labelled rows from the change point
on, set aside before training by a hash of their event id so retries pick the same rows.
The decision is a *paired* one-sided test of "the challenger's per-row loss is lower":

- 0/1 loss (classification metrics): McNemar's exact test. Only the rows where exactly one
  model is right carry information; under "no better" the challenger wins each of them with
  probability 1/2, so the p-value is a binomial tail. A champion at 0.997 can be replaced by
  a model right on the few rows it gets wrong, which an absolute margin forbade.
- squared or absolute error (regression): a paired t-test on the per-row differences.

The challenger deploys when the p-value is at most ``1 - confidence`` and its observed gain
is at least ``margin``. Pairing removes the holdout's own difficulty from the comparison, so
far fewer rows decide than two separate accuracy intervals would need. Everything the
decision used (p-value, wins, losses, gain and its lower confidence bound) is recorded.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from driftline.config.pipeline import GateConfig

__all__ = ["GateBound", "GateDecision", "compare", "gate_bound", "holdout_mask", "per_row_loss"]


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger may replace the champion, the test's numbers and the reason."""

    deploy: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    margin: float
    holdout_rows: int
    confidence: float = 0.0
    p_value: float | None = None
    gain: float | None = None
    gain_lower: float | None = None
    wins: int | None = None
    losses: int | None = None
    test: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for the training's metrics."""
        return {
            "deploy": self.deploy,
            "reason": self.reason,
            "metric": self.metric,
            "challenger": self.challenger,
            "champion": self.champion,
            "margin": self.margin,
            "holdout_rows": self.holdout_rows,
            "confidence": self.confidence,
            "p_value": self.p_value,
            "gain": self.gain,
            "gain_lower": self.gain_lower,
            "wins": self.wins,
            "losses": self.losses,
            "test": self.test,
        }


@dataclass(frozen=True)
class GateBound:
    """Whether *any* challenger could pass the gate on a holdout, before training one.

    Under McNemar's exact test a challenger can win at most the rows the champion gets wrong
    (``champion_errors``); with ``wins`` wins and no loss the p-value is ``0.5 ** wins``, so
    at least ``wins_needed`` champion errors are required (and ``margin * holdout_rows`` for
    the gain). Below that even a perfect challenger is rejected: training it is wasted.
    """

    possible: bool
    champion_errors: int
    holdout_rows: int
    wins_needed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for the training's metrics (read back by `from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> GateBound:
        """The bound a training recorded; missing fields read as no errors, one win needed.

        >>> GateBound.from_dict(GateBound(False, 1, 99, 4).to_dict())
        GateBound(possible=False, champion_errors=1, holdout_rows=99, wins_needed=4)
        """
        return cls(
            bool(record.get("possible", False)),
            int(record.get("champion_errors", 0)),
            int(record.get("holdout_rows", 0)),
            int(record.get("wins_needed", 1)),
        )

    def rows_to_possible(self) -> int:
        """Holdout rows at which the champion's errors could reach ``wins_needed``, at its
        error rate estimated optimistically for a challenger, ``(errors + 1) / (rows + 1)``.

        >>> GateBound(False, 1, 99, 4).rows_to_possible()
        200
        """
        rate = (self.champion_errors + 1) / (self.holdout_rows + 1)
        return math.ceil(self.wins_needed / rate)


def gate_bound(config: GateConfig, metric: str, champion_loss: np.ndarray) -> GateBound | None:
    """The :class:`GateBound` of a champion's per-row 0/1 loss on the holdout; None for
    regression metrics (a paired t-test has no such bound: any nonzero loss can be beaten).

    >>> b = gate_bound(GateConfig(confidence=0.9), "accuracy", np.r_[np.ones(3), np.zeros(97)])
    >>> b.possible, b.champion_errors, b.wins_needed
    (False, 3, 4)
    """
    if metric not in ("accuracy", "f1_macro"):
        return None
    loss = np.asarray(champion_loss, np.float64)
    n, errors = len(loss), int((loss > 0).sum())
    alpha = 1.0 - config.confidence
    needed = max(1, math.ceil(math.log(alpha) / math.log(0.5) - 1e-9))
    needed = max(needed, math.ceil(config.margin * n - 1e-9))
    return GateBound(errors >= needed, errors, n, needed)


def holdout_mask(
    event_ids: list[str], is_new: np.ndarray, fraction: float, seed: int = 0
) -> np.ndarray:
    """Rows held out for the gate: new rows whose id hashes below ``fraction``.

    >>> m = holdout_mask([f"e{i}" for i in range(1000)], np.ones(1000, bool), 0.2)
    >>> 150 < int(m.sum()) < 250
    True
    """
    cut = int(fraction * 2**32)
    hashed = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(f"{seed}:{e}".encode(), digest_size=4).digest(), "big")
            for e in event_ids
        ),
        dtype=np.int64,
        count=len(event_ids),
    )
    return (hashed < cut) & np.asarray(is_new, dtype=bool)


def per_row_loss(metric: str, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The loss of each row that ``metric`` aggregates: 0/1 error for classification
    metrics, squared error for ``mse``/``r2``, absolute error for ``mae``.

    >>> per_row_loss("accuracy", np.array([0, 1, 1]), np.array([0, 0, 1])).tolist()
    [0.0, 1.0, 0.0]
    """
    y, predicted = np.asarray(y), np.asarray(predicted)
    if metric in ("accuracy", "f1_macro"):
        return (predicted != y).astype(np.float64)
    diff = predicted.astype(np.float64) - y.astype(np.float64)
    return np.abs(diff) if metric == "mae" else diff * diff


def compare(
    config: GateConfig,
    metric: str,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    challenger_loss: np.ndarray,
    champion_loss: np.ndarray | None,
) -> GateDecision:
    """Decide from both models' holdout metrics and per-row losses (same rows, same order).

    >>> y = np.r_[np.zeros(40), np.ones(60)]
    >>> champ = y.copy(); champ[:12] = 1          # wrong on 12 rows
    >>> chall = y.copy(); chall[:2] = 1           # wrong on 2 of them
    >>> d = compare(GateConfig(confidence=0.95), "accuracy", {"accuracy": 0.98},
    ...             {"accuracy": 0.88}, per_row_loss("accuracy", y, chall),
    ...             per_row_loss("accuracy", y, champ))
    >>> d.deploy, d.wins, d.losses, round(d.p_value, 4)
    (True, 10, 0, 0.001)
    """
    n = len(challenger_loss)
    ch = float(challenger[metric])
    base: dict[str, Any] = {
        "metric": metric,
        "challenger": ch,
        "margin": config.margin,
        "holdout_rows": n,
        "confidence": config.confidence,
    }
    if not np.isfinite(ch):
        return GateDecision(False, f"challenger {metric} is {ch}", champion=None, **base)
    if champion is None or champion_loss is None:
        reason = f"no champion yet: first model ({metric} {ch:.4g} on {n} holdout rows)"
        return GateDecision(True, reason, champion=None, **base)
    cp = float(champion[metric])
    diff = np.asarray(champion_loss, np.float64) - np.asarray(challenger_loss, np.float64)
    alpha = 1.0 - config.confidence
    if metric in ("accuracy", "f1_macro"):
        wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
        p = float(stats.binom.sf(wins - 1, wins + losses, 0.5)) if wins + losses else 1.0
        test = "mcnemar-exact"
    else:
        wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
        sd = float(diff.std(ddof=1)) if n > 1 else 0.0
        if sd == 0.0:
            p = 0.0 if diff.mean() > 0 else 1.0
        else:
            p = float(stats.t.sf(diff.mean() / (sd / math.sqrt(n)), n - 1))
        test = "paired-t"
    gain = float(diff.mean()) if n else 0.0
    se = float(diff.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    lower = gain - float(stats.norm.ppf(config.confidence)) * se
    numbers: dict[str, Any] = {
        "p_value": p,
        "gain": gain,
        "gain_lower": lower,
        "wins": wins,
        "losses": losses,
        "test": test,
    }
    if p <= alpha and gain >= config.margin:
        reason = (
            f"challenger {metric} {ch:.4g} beats champion {cp:.4g} on {n} paired holdout rows "
            f"({test}: {wins} wins, {losses} losses, p={p:.3g} <= {alpha:.3g})"
        )
        return GateDecision(True, reason, champion=cp, **base, **numbers)
    reason = (
        f"challenger {metric} {ch:.4g} not shown better than champion {cp:.4g} on {n} paired "
        f"holdout rows ({test}: {wins} wins, {losses} losses, p={p:.3g}, needs <= {alpha:.3g}"
        + (f", gain {gain:.4g} >= margin {config.margin:g}" if config.margin > 0 else "")
        + ")"
    )
    return GateDecision(False, reason, champion=cp, **base, **numbers)
