"""Errors raised by the streams package (a branch of `driftline.errors.DriftlineError`).

StreamsError
└── ReplayError (ValueError)     a replay input file or option is wrong

Bad settings raise the shared `driftline.errors.ConfigError`, re-exported here.
"""

from __future__ import annotations

from driftline.errors import ConfigError, DriftlineError

__all__ = ["ConfigError", "ReplayError", "StreamsError"]


class StreamsError(DriftlineError):
    """Base of every error raised by `driftline.streams`."""


class ReplayError(StreamsError, ValueError):
    """A file or option given to `driftline replay` cannot be used."""
