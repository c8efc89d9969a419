"""Errors raised by :mod:`detectors`.

Every message names the bad value and says how to fix it::

    ValueError
    └── DetectorError            any misuse of a detector, sketch or score
        ├── InvalidInputError    bad array or parameter (shape, NaN/inf, ert < 1, k < 1, ...)
        └── NotFittedError       update/score before fit
"""

from __future__ import annotations

from driftline.errors import DriftlineError

__all__ = ["DetectorError", "InvalidInputError", "NotFittedError"]


class DetectorError(DriftlineError, ValueError):
    """Base class of every error raised by :mod:`detectors`.

    Example:
        >>> from driftline.detectors import DetectorError, OnlineMMD
        >>> try:
        ...     OnlineMMD(ert=0).fit([[0.0]] * 50)
        ... except DetectorError as exc:
        ...     print(exc)
        ert must be an integer >= 1 (expected events between false alarms), got 0
    """


class InvalidInputError(DetectorError):
    """An array or parameter is unusable; the message names it and the fix."""


class NotFittedError(DetectorError):
    """A detector or scorer was used before ``fit(reference)``."""
