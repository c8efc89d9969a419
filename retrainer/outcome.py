"""What one retrainer call produced: the training's status, reason, model and timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftline.retrainer.transfer import ParentChoice
from driftline.schemas import LabelRequest, ModelVersionEvent

__all__ = ["OUTCOME_STATUSES", "TrainingOutcome"]

OUTCOME_STATUSES = ("COMPLETE", "FAILED", "SKIPPED", "DUPLICATE", "IGNORED", "REUSED")
"""Store statuses of a finished training, plus ``DUPLICATE`` (the episode already has a
training: nothing was done), ``IGNORED`` (no trigger looks at this input) and ``REUSED`` (a
past model was redeployed without training; the store records it as SKIPPED, code
``reuse``)."""


@dataclass(frozen=True)
class TrainingOutcome:
    """The result of ``Retrainer.handle_drift`` / ``tick`` / ``train``.

    ``deployed`` is True when the challenger passed the gate and became the champion, or a
    past model was redeployed (``REUSED``);
    ``event`` is then the published :class:`~driftline.schemas.ModelVersionEvent`. ``timings`` holds
    seconds per phase (``select_s``, ``snapshot_s``, ``fit_s``, ... and ``total_s``).

    >>> TrainingOutcome("SKIPPED", "too few labels").deployed
    False
    """

    status: str
    reason: str
    training_id: str | None = None
    model_version_id: str | None = None
    deployed: bool = False
    parent: ParentChoice | None = None
    data_version_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    event: ModelVersionEvent | None = None
    label_request: LabelRequest | None = None

    @property
    def trained(self) -> bool:
        """Whether a model was trained (COMPLETE, deployed or not)."""
        return self.status == "COMPLETE"
