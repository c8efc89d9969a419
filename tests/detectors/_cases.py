"""Detector cases shared by the contract tests: small, seeded streams, fast calibration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from driftline.detectors import DriftDetector, FeatureDrift, OnlineMMD, OutputDrift

# Fewer simulated events than the default keeps each fit well under a second.
FAST = {"n_simulated": 200_000}

Stream = Callable[[np.random.Generator, int], np.ndarray]


@dataclass
class Case:
    """A detector factory with its reference and a no-drift and a drifted stream."""

    name: str
    make: Callable[..., DriftDetector]
    reference: np.ndarray
    same: Stream
    shifted: Stream
    n_features: int


def _gauss(d: int, shift: float = 0.0) -> Stream:
    offset = np.zeros(d)
    offset[0] = shift
    return lambda rng, n: rng.normal(size=(n, d)) + offset


def _proba(alpha: list[float]) -> Stream:
    return lambda rng, n: rng.dirichlet(alpha, size=n)


def _labels(p: list[float]) -> Stream:
    return lambda rng, n: rng.choice(len(p), size=n, p=p)


def _cases() -> list[Case]:
    ref_rng = np.random.default_rng(42)
    return [
        Case(
            "mmd",
            lambda **kw: OnlineMMD(**{"window": 100, **FAST, **kw}),
            ref_rng.normal(size=(3000, 4)),
            _gauss(4),
            _gauss(4, 2.0),
            4,
        ),
        Case(
            "feature",
            lambda **kw: FeatureDrift(**{"window": 100, **FAST, **kw}),
            ref_rng.normal(size=(3000, 4)),
            _gauss(4),
            _gauss(4, 2.0),
            4,
        ),
        Case(
            "output-proba",
            lambda **kw: OutputDrift(**{"window": 100, **FAST, **kw}),
            ref_rng.dirichlet([6.0, 2.0, 1.0], size=3000),
            _proba([6.0, 2.0, 1.0]),
            _proba([1.0, 2.0, 6.0]),
            3,
        ),
        Case(
            "output-labels",
            lambda **kw: OutputDrift(**{"window": 100, **FAST, **kw}),
            ref_rng.choice(3, size=3000, p=[0.6, 0.3, 0.1]),
            _labels([0.6, 0.3, 0.1]),
            _labels([0.1, 0.3, 0.6]),
            3,
        ),
    ]


CASES = _cases()
