"""Wasted-computation guard: predict, before training, whether the result will deploy.

Google's study of production pipelines found that over 30% of trainings never deploy and
that predicting this up front halves wasted computation. Here each situation is described by
three cheap numbers, all known before training:

- ``magnitude``: how strong the alarm was, ``log1p(statistic / threshold)`` scaled to [0, 1]
  (0 for time, data-amount and performance triggers);
- ``similarity``: core-set similarity of the new data to the champion's training data
  (1 = the champion was trained on data like this);
- ``champion_score``: the champion's score on the gate's holdout of the new data
  (accuracy, or R^2 clipped to [0, 1] for regression).

The probability of deploying is a kernel-weighted average of past outcomes in nearby
situations with a uniform Beta(1, 1) prior. The guard is conservative: it trains whenever
there is no champion, fewer than ``min_history`` past outcomes, too little nearby evidence,
or ``explore_every`` skips in a row (so its own skips cannot starve it of new evidence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.config.pipeline import GuardConfig

__all__ = ["GuardFeatures", "GuardVerdict", "WastedComputationGuard", "history_from_trainings"]

# Nearby evidence (sum of kernel weights) below which the guard does not trust its estimate.
MIN_EVIDENCE = 2.0
_MAX_LOG_RATIO = 3.0


@dataclass(frozen=True)
class GuardFeatures:
    """The situation of one training, as the guard sees it (see module docstring)."""

    magnitude: float
    similarity: float
    champion_score: float

    @classmethod
    def from_raw(
        cls, ratio: float | None, similarity: float, champion_score: float
    ) -> GuardFeatures:
        """Scale raw values: ``ratio`` = statistic / threshold (None when not a drift)."""
        mag = 0.0 if not ratio or ratio <= 0 else min(math.log1p(ratio), _MAX_LOG_RATIO)
        return cls(
            mag / _MAX_LOG_RATIO,
            float(np.clip(similarity, 0.0, 1.0)),
            float(np.clip(champion_score, 0.0, 1.0)),
        )

    def vector(self) -> np.ndarray:
        return np.array([self.magnitude, self.similarity, self.champion_score])

    def to_dict(self) -> dict[str, float]:
        return {
            "magnitude": self.magnitude,
            "similarity": self.similarity,
            "champion_score": self.champion_score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardFeatures:
        return cls(
            float(data["magnitude"]), float(data["similarity"]), float(data["champion_score"])
        )


@dataclass(frozen=True)
class GuardVerdict:
    """Train or skip, the estimated probability of deploying, and why."""

    train: bool
    reason: str
    p_deploy: float | None
    evidence: float
    n_history: int
    features: GuardFeatures | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "reason": self.reason,
            "p_deploy": self.p_deploy,
            "evidence": self.evidence,
            "n_history": self.n_history,
            "features": None if self.features is None else self.features.to_dict(),
        }


class WastedComputationGuard:
    """Decides from past outcomes whether a training is worth running.

    >>> g = WastedComputationGuard(GuardConfig(min_history=3))
    >>> stale = GuardFeatures(0.2, 0.99, 0.95)
    >>> history = [(GuardFeatures(0.2, 0.98, 0.96), False)] * 5
    >>> v = g.assess(stale, history)
    >>> v.train, round(v.p_deploy, 2)
    (False, 0.14)
    >>> g.assess(GuardFeatures(0.9, 0.3, 0.5), history).train  # unlike anything seen: train
    True
    """

    def __init__(self, config: GuardConfig) -> None:
        self.config = config

    def assess(
        self,
        features: GuardFeatures | None,
        history: Sequence[tuple[GuardFeatures, bool]],
        recent_skips: int = 0,
    ) -> GuardVerdict:
        c = self.config
        n = len(history)
        if not c.enabled:
            return GuardVerdict(True, "guard disabled", None, 0.0, n, features)
        if features is None:
            return GuardVerdict(
                True, "no champion: the first model always trains", None, 0.0, n, None
            )
        if n == 0:
            return GuardVerdict(True, "no past outcomes yet", 0.5, 0.0, 0, features)
        x = np.stack([f.vector() for f, _ in history])
        y = np.array([1.0 if d else 0.0 for _, d in history])
        d2 = ((x - features.vector()) ** 2).sum(axis=1)
        w = np.exp(-d2 / (2.0 * c.bandwidth**2))
        evidence = float(w.sum())
        p = float((1.0 + w @ y) / (2.0 + evidence))
        if n < c.min_history:
            why = f"only {n} past outcomes (min_history={c.min_history}); P(deploy)~{p:.2f}"
            return GuardVerdict(True, why, p, evidence, n, features)
        if p >= c.threshold:
            why = f"P(deploy)={p:.2f} >= threshold {c.threshold} from {evidence:.1f} nearby runs"
            return GuardVerdict(True, why, p, evidence, n, features)
        if evidence < MIN_EVIDENCE:
            why = f"P(deploy)={p:.2f} but only {evidence:.1f} nearby past runs; training"
            return GuardVerdict(True, why, p, evidence, n, features)
        if recent_skips >= c.explore_every:
            why = f"P(deploy)={p:.2f}, but {recent_skips} skips in a row: exploring"
            return GuardVerdict(True, why, p, evidence, n, features)
        why = (
            f"skipped by the guard: P(deploy)={p:.2f} < threshold {c.threshold} from "
            f"{evidence:.1f} similar past runs (drift magnitude {features.magnitude:.2f}, "
            f"similarity to champion data {features.similarity:.2f}, champion score "
            f"{features.champion_score:.2f})"
        )
        return GuardVerdict(False, why, p, evidence, n, features)


def history_from_trainings(
    trainings: Sequence[Any],
) -> tuple[list[tuple[GuardFeatures, bool]], int]:
    """Past (situation, deployed) pairs from store trainings (newest first), and how many of
    the newest guard decisions in a row were skips."""
    history: list[tuple[GuardFeatures, bool]] = []
    skips, counting = 0, True
    for t in trainings:
        guard = t.metrics.get("guard") if isinstance(t.metrics, dict) else None
        if not isinstance(guard, dict):
            continue
        if counting:
            if guard.get("skipped"):
                skips += 1
            else:
                counting = False
        if t.status == "COMPLETE" and guard.get("features") and "deployed" in t.metrics:
            history.append(
                (GuardFeatures.from_dict(guard["features"]), bool(t.metrics["deployed"]))
            )
    return history, skips
