"""Champion/challenger gate (Scanflow): deploy only a model that is better on the new data.

Both models are scored on the same holdout: labelled rows of the *new* data (the drifted
window, i.e. the most recent labelled data), set aside before training by a hash of their
event id so that retries pick the same rows. The comparison is recorded either way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.config.pipeline import GateConfig
from driftline.retrainer.adapters.base import better

__all__ = ["GateDecision", "compare", "holdout_mask"]


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger may replace the champion, with both scores and the reason."""

    deploy: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    margin: float
    holdout_rows: int

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
        }


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


def compare(
    config: GateConfig,
    metric: str,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    holdout_rows: int,
) -> GateDecision:
    """Decide from the two models' holdout metrics.

    >>> compare(GateConfig(margin=0.01), "accuracy", {"accuracy": 0.9}, {"accuracy": 0.85},
    ...         100).deploy
    True
    >>> compare(GateConfig(margin=0.01), "accuracy", {"accuracy": 0.855}, {"accuracy": 0.85},
    ...         100).reason
    'challenger accuracy 0.855 does not beat champion 0.85 by margin 0.01'
    """
    ch = float(challenger[metric])
    if not np.isfinite(ch):
        return GateDecision(
            False, f"challenger {metric} is {ch}", metric, ch, None, config.margin, holdout_rows
        )
    if champion is None:
        return GateDecision(
            True,
            f"no champion yet: first model ({metric} {ch:.4g} on {holdout_rows} holdout rows)",
            metric,
            ch,
            None,
            config.margin,
            holdout_rows,
        )
    cp = float(champion[metric])
    if better(metric, ch, cp, config.margin):
        reason = f"challenger {metric} {ch:.4g} beats champion {cp:.4g} by > {config.margin:g}"
        return GateDecision(True, reason, metric, ch, cp, config.margin, holdout_rows)
    reason = (
        f"challenger {metric} {ch:.4g} does not beat champion {cp:.4g} by margin {config.margin:g}"
    )
    return GateDecision(False, reason, metric, ch, cp, config.margin, holdout_rows)
