"""Errors raised by the streams package.

StreamsError (Exception)
├── ConfigError (ValueError)     a setting or the config file is wrong
└── ReplayError (ValueError)     a replay input file or option is wrong
"""

from __future__ import annotations


class StreamsError(Exception):
    """Base of every error raised by `streams`."""


class ConfigError(StreamsError, ValueError):
    """A setting, environment variable or config file is wrong; the message says the fix."""


class ReplayError(StreamsError, ValueError):
    """A file or option given to `driftline replay` cannot be used."""
