"""Errors raised by the lifecycle store.

Every error is a ``StoreError``; bad input is rejected before anything is written, and
writes happen in one transaction, so a failed call changes nothing::

    StoreError (Exception)
    ├── NotFoundError (KeyError)          unknown id or name; the message names it
    ├── SchemaMismatchError (ValueError)  table or feature list does not match the pipeline
    ├── ArtifactCorruptedError            stored bytes do not match their content hash
    ├── ConcurrentUpdateError             another writer changed the record first; re-read, retry
    └── InvalidTransitionError (ValueError) a training status change that is not allowed
"""

from __future__ import annotations

from driftline.errors import DriftlineError

__all__ = [
    "ArtifactCorruptedError",
    "ConcurrentUpdateError",
    "InvalidTransitionError",
    "NotFoundError",
    "SchemaMismatchError",
    "StoreError",
]


class StoreError(DriftlineError):
    """Base class of every lifecycle store error."""


class NotFoundError(StoreError, KeyError):
    """An id or name that the store does not know."""

    def __str__(self) -> str:
        # KeyError would quote the message; show it as written.
        return str(self.args[0]) if self.args else ""


class SchemaMismatchError(StoreError, ValueError):
    """Feature names or table columns that do not match the pipeline's schema."""


class ArtifactCorruptedError(StoreError):
    """Stored artifact bytes whose hash differs from the one recorded at registration."""


class ConcurrentUpdateError(StoreError):
    """Another writer changed the record between our read and our write."""


class InvalidTransitionError(StoreError, ValueError):
    """A training status change that its current status does not allow."""
