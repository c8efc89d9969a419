"""driftline: label-free drift detection on Kafka streams and warm-started retraining with a
versioned model lifecycle.

The names a user needs live here; everything else is in the subpackages, whose imports point
one way: ``schemas ← detectors ← lifecycle_store ← retrainer ← streams`` (``errors`` and
``config`` sit at the bottom beside ``schemas``). Names load on first use, so a consumer
service that imports `ModelSubscriber` pays for neither torch nor Faust.

>>> import driftline
>>> driftline.OnlineMMD.__name__
'OnlineMMD'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ConfigError",
    "Coreset",
    "DriftEvent",
    "DriftlineError",
    "LifecycleStore",
    "ModelSubscriber",
    "ModelVersionEvent",
    "OnlineMMD",
    "PipelineConfig",
    "Settings",
    "similarity",
]

_WHERE = {
    "ConfigError": "driftline.errors",
    "DriftlineError": "driftline.errors",
    "PipelineConfig": "driftline.config",
    "Settings": "driftline.config",
    "DriftEvent": "driftline.schemas",
    "ModelVersionEvent": "driftline.schemas",
    "Coreset": "driftline.detectors",
    "OnlineMMD": "driftline.detectors",
    "similarity": "driftline.detectors",
    "LifecycleStore": "driftline.lifecycle_store",
    "ModelSubscriber": "driftline.streams.sdk",
}

if TYPE_CHECKING:
    from driftline.config import PipelineConfig, Settings
    from driftline.detectors import Coreset, OnlineMMD, similarity
    from driftline.errors import ConfigError, DriftlineError
    from driftline.lifecycle_store import LifecycleStore
    from driftline.schemas import DriftEvent, ModelVersionEvent
    from driftline.streams.sdk import ModelSubscriber


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'driftline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
