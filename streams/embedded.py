"""EmbeddedRunner: the whole driftline loop in one process, without a broker.

PLACEHOLDER: the runner lands once the monitor step and the retrainer exist.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AlarmRecord",
    "DeploymentRecord",
    "MonitorPoint",
    "RunResult",
    "TrainingRecord",
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MonitorPoint(_Record):
    """The detector's statistic and threshold after the micro-batch ending at ``row``."""

    row: int
    statistic: float | None
    threshold: float | None


class AlarmRecord(_Record):
    """A DriftEvent the monitor raised, placed at the stream row where it fired."""

    row: int
    drift_id: str
    statistic: float
    threshold: float
    episode: str
    features: list[str] = Field(default_factory=list)


class TrainingRecord(_Record):
    """One training decision of the retrainer (completed, skipped or failed) and its outcome.

    ``warm_start_from`` names the past model version whose lifecycle was transferred (None for
    a training from scratch); ``warm_start_reason`` says why it was chosen.
    """

    row: int
    training_id: str
    trigger: str
    status: str
    reason: str = ""
    model_version_id: str | None = None
    data_version_id: str | None = None
    warm_start_from: str | None = None
    warm_start_reason: str = ""
    deployed: bool = False
    seconds: float = 0.0
    rows: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)


class DeploymentRecord(_Record):
    """A model version that became the champion at stream row ``row``."""

    row: int
    deployment_id: str
    model_version_id: str
    data_version_id: str | None = None
    parent_model_version_id: str | None = None
    reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


class RunResult(_Record):
    """Everything one run of a policy did, in stream rows, ready to score and to chart."""

    policy: str
    pipeline: str
    rows: int
    seconds: float
    points: list[MonitorPoint] = Field(default_factory=list)
    alarms: list[AlarmRecord] = Field(default_factory=list)
    trainings: list[TrainingRecord] = Field(default_factory=list)
    deployments: list[DeploymentRecord] = Field(default_factory=list)
    dead_letters: int = 0
