"""driftline detectors: core-set sketches, calibrated label-free drift detectors, OOD scores
and dataset similarity. Pure computation (numpy/scipy): no I/O, no Kafka, no database.
"""

from __future__ import annotations

from driftline.detectors.base import DriftDetector
from driftline.detectors.coreset import Coreset
from driftline.detectors.exceptions import (
    DetectorError,
    InvalidInputError,
    NotFittedError,
    SmallReferenceWarning,
)
from driftline.detectors.factory import DETECTOR_KINDS, make_detector
from driftline.detectors.feature import FeatureDrift
from driftline.detectors.mmd import OnlineMMD
from driftline.detectors.ood import OODScorer
from driftline.detectors.output import OutputDrift
from driftline.detectors.pooled import PooledDetector
from driftline.detectors.result import DriftResult, PartialState
from driftline.detectors.similarity import SIMILARITY_SCALE, exact_mmd2, mmd2, similarity

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
    "PartialState",
    "PooledDetector",
    "SmallReferenceWarning",
    "exact_mmd2",
    "make_detector",
    "mmd2",
    "similarity",
]
