"""The one exception root of driftline.

Every error driftline raises on purpose is a `DriftlineError`; the CLI turns any of them into
one line on stderr and exit code 2. Each package adds its own branch::

    DriftlineError (Exception)
    ├── ConfigError (ValueError)      a setting, environment variable or config file is wrong
    ├── SchemaError (ValueError)      driftline.schemas: a record breaks its contract
    ├── DetectorError (ValueError)    driftline.detectors: bad input or state for a detector
    ├── StoreError                    driftline.lifecycle_store: a store call that cannot be done
    ├── RetrainerError                driftline.retrainer: adapters, trainings
    └── StreamsError                  driftline.streams: transports, replay, publishing

Messages name the bad value and say the fix. Control flow never reads a message: where a
caller must tell failures apart, the error carries a reason code.

>>> from driftline.errors import ConfigError, DriftlineError
>>> issubclass(ConfigError, DriftlineError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = ["ConfigError", "DriftlineError"]


class DriftlineError(Exception):
    """Base of every error driftline raises on purpose."""


class ConfigError(DriftlineError, ValueError):
    """A setting, environment variable or config file is wrong; the message says the fix."""
