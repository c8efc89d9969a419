"""driftline detectors: core-set sketches, calibrated label-free drift detectors, OOD scores
and dataset similarity. Pure computation (numpy/scipy): no I/O, no Kafka, no database.
"""

from __future__ import annotations

from detectors.base import DriftDetector
from detectors.coreset import Coreset
from detectors.exceptions import DetectorError, InvalidInputError, NotFittedError
from detectors.factory import DETECTOR_KINDS, make_detector
from detectors.feature import FeatureDrift
from detectors.mmd import OnlineMMD
from detectors.ood import OODScorer
from detectors.output import OutputDrift
from detectors.result import DriftResult
from detectors.similarity import SIMILARITY_SCALE, exact_mmd2, mmd2, similarity

__all__ = [
    "DETECTOR_KINDS",
    "SIMILARITY_SCALE",
    "Coreset",
    "DetectorError",
    "DriftDetector",
    "DriftResult",
    "FeatureDrift",
    "InvalidInputError",
    "NotFittedError",
    "OODScorer",
    "OnlineMMD",
    "OutputDrift",
    "exact_mmd2",
    "make_detector",
    "mmd2",
    "similarity",
]
