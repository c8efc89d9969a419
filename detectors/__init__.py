"""driftline detectors: core-set sketches, calibrated label-free drift detectors, OOD scores
and dataset similarity. Pure computation (numpy/scipy): no I/O, no Kafka, no database.
"""

from __future__ import annotations

from detectors.base import DriftDetector
from detectors.coreset import Coreset
from detectors.exceptions import DetectorError, InvalidInputError, NotFittedError
from detectors.mmd import OnlineMMD
from detectors.result import DriftResult
from detectors.similarity import exact_mmd2, mmd2, similarity

__all__ = [
    "Coreset",
    "DetectorError",
    "DriftDetector",
    "DriftResult",
    "InvalidInputError",
    "NotFittedError",
    "OnlineMMD",
    "exact_mmd2",
    "mmd2",
    "similarity",
]
