"""Configuration shared by every driftline process.

`PipelineConfig` is the ``[pipeline]`` table users write (detector, triggers, selection, model,
gate, guard); `Settings` is everything a process needs to run one pipeline (Kafka, store,
artifacts, ports) with the `PipelineConfig` inside. The monitor and the retrainer both read
their configuration from here, so neither depends on the other for it.
"""

from __future__ import annotations

from driftline.config.pipeline import PipelineConfig
from driftline.config.settings import Settings

__all__ = ["PipelineConfig", "Settings"]
