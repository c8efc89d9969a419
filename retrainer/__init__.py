"""driftline retrainer: drift events in, trained, gated, published model versions out.

A library with no Kafka import, so the same code runs in the embedded runner and behind
Kafka::

    PipelineConfig          the [pipeline] table users write (triggers, selection, model, ...)
    Retrainer               handle_drift / tick / train
    TrainingOutcome         what one call did: status, reason, model, parent, timings
    Publisher               where model versions and label requests go (InMemoryPublisher)
    flush_outbox            publish what the store recorded but a crash left unpublished
    ModelAdapter            torch-mlp (default), sklearn, river, or your pkg.mod:Class

Importing this package does not import torch; the torch adapter loads on first use.
Errors are in :mod:`driftline.retrainer.exceptions`.
"""

from driftline.config.pipeline import PipelineConfig
from driftline.retrainer.adapters import (
    Budget,
    FitReport,
    ModelAdapter,
    load_adapter,
    make_adapter,
    register_adapter,
)
from driftline.retrainer.exceptions import (
    ConfigError,
    RetrainerError,
    TrainingError,
)
from driftline.retrainer.outcome import TrainingOutcome
from driftline.retrainer.publisher import InMemoryPublisher, Publisher, flush_outbox
from driftline.retrainer.service import Retrainer
from driftline.retrainer.transfer import ParentChoice

__all__ = [
    "Budget",
    "ConfigError",
    "FitReport",
    "InMemoryPublisher",
    "ModelAdapter",
    "ParentChoice",
    "PipelineConfig",
    "Publisher",
    "Retrainer",
    "RetrainerError",
    "TrainingError",
    "TrainingOutcome",
    "flush_outbox",
    "load_adapter",
    "make_adapter",
    "register_adapter",
]
