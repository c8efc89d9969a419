"""Build a detector from configuration."""

from __future__ import annotations

from typing import Any

from driftline.detectors.base import DriftDetector
from driftline.detectors.exceptions import InvalidInputError
from driftline.detectors.feature import FeatureDrift
from driftline.detectors.mmd import OnlineMMD
from driftline.detectors.output import OutputDrift

__all__ = ["DETECTOR_KINDS", "make_detector"]

DETECTOR_KINDS: dict[str, type[DriftDetector]] = {
    "mmd": OnlineMMD,
    "feature": FeatureDrift,
    "output": OutputDrift,
}


def make_detector(kind: str, **params: Any) -> DriftDetector:
    """An unfitted detector of ``kind`` ("mmd", "feature" or "output") with ``params``.

    Example:
        >>> det = make_detector("mmd", ert=5000, window=200)
        >>> type(det).__name__, det.ert, det.window
        ('OnlineMMD', 5000, 200)
    """
    cls = DETECTOR_KINDS.get(kind)
    if cls is None:
        raise InvalidInputError(
            f"unknown detector kind {kind!r}; use one of {sorted(DETECTOR_KINDS)}"
        )
    try:
        det = cls(**params)
    except TypeError as exc:
        allowed = sorted(cls().get_params())
        raise InvalidInputError(
            f"bad parameters {sorted(params)} for detector kind {kind!r} ({exc}); "
            f"allowed: {allowed}"
        ) from exc
    det._check_params()
    return det
