"""Errors raised by :mod:`detectors`.

Every message names the bad value and says how to fix it::

    ValueError
    └── DetectorError            any misuse of a detector, sketch or score
        ├── InvalidInputError    bad array or parameter (shape, NaN/inf, ert < 1, k < 1, ...)
        └── NotFittedError       update/score before fit

    UserWarning
    └── SmallReferenceWarning    reference too small for the requested ert (conservative
                                 threshold used instead)
"""

from __future__ import annotations

from driftline.errors import DriftlineError

__all__ = ["DetectorError", "InvalidInputError", "NotFittedError", "SmallReferenceWarning"]


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


class SmallReferenceWarning(UserWarning):
    """The reference has fewer than 4 rows per event of ``window``.

    Its own sampling error then dominates what the chart sees, so the threshold is calibrated
    for ``ert * min((4 * window / rows) ** 2, 10)`` instead of ``ert``: fewer false alarms than
    requested and a longer delay, never more false alarms.

    Example:
        >>> import warnings
        >>> import numpy as np
        >>> from driftline.detectors import OnlineMMD
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = OnlineMMD(ert=1000, window=100, n_simulated=50_000).fit(np.ones((200, 2)))
        >>> caught[0].category.__name__
        'SmallReferenceWarning'
    """
