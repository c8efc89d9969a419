"""Errors raised by :mod:`retrainer`.

Every message names the bad value and says the fix::

    RetrainerError (driftline.errors.DriftlineError)
    ├── ConfigError (ValueError)          the shared driftline.errors.ConfigError, re-exported
    ├── AdapterError                      a model adapter misused or unknown
    │   ├── UnknownAdapterError (KeyError)  no adapter under that name or dotted path
    │   ├── NotBuiltError                  predict/save before build or fit
    │   ├── ArtifactFormatError (ValueError) bytes that are not this adapter's artifact
    │   └── WarmStartError                 parent model incompatible with the new one
    └── TrainingError                     a training that must be marked FAILED
        ├── TrainingDivergedError          the loss became NaN or infinite
        └── TrainingTimeoutError           the hard time limit was exceeded

A ``TrainingError`` never escapes :class:`driftline.retrainer.service.Retrainer`: the training is
recorded as FAILED with the message as its reason and the champion stays deployed.
"""

from __future__ import annotations

from driftline.errors import ConfigError, DriftlineError

__all__ = [
    "AdapterError",
    "ArtifactFormatError",
    "ConfigError",
    "NotBuiltError",
    "RetrainerError",
    "TrainingDivergedError",
    "TrainingError",
    "TrainingTimeoutError",
    "UnknownAdapterError",
    "WarmStartError",
]


class RetrainerError(DriftlineError):
    """Base class of every retrainer error."""


class AdapterError(RetrainerError):
    """A model adapter was misused."""


class UnknownAdapterError(AdapterError, KeyError):
    """No adapter is registered under the name, and it is no importable ``pkg.mod:Class``."""

    def __str__(self) -> str:
        # KeyError would quote the message; show it as written.
        return str(self.args[0]) if self.args else ""


class NotBuiltError(AdapterError):
    """``predict``/``save``/``evaluate`` before ``build`` or ``fit``."""


class ArtifactFormatError(AdapterError, ValueError):
    """Bytes that this adapter did not write (or a different framework wrote)."""


class WarmStartError(AdapterError):
    """The parent model cannot seed the new one (other features, other architecture)."""


class TrainingError(RetrainerError):
    """A training failed; the retrainer records it as FAILED with this message."""


class TrainingDivergedError(TrainingError):
    """The training loss became NaN or infinite."""


class TrainingTimeoutError(TrainingError):
    """The training exceeded ``model.timeout_s``."""
