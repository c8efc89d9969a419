"""Kafka topic names of a pipeline, derived from its name in one place.

>>> Topics("fraud").model_versions
'fraud.model-versions'
"""

from __future__ import annotations

from dataclasses import dataclass

from driftline.schemas._base import _check_pipeline


@dataclass(frozen=True)
class Topics:
    """The topics of pipeline ``{p}``."""

    pipeline: str

    def __post_init__(self) -> None:
        _check_pipeline(self.pipeline)

    @property
    def inputs(self) -> str:
        return f"{self.pipeline}.inputs"

    @property
    def labels(self) -> str:
        return f"{self.pipeline}.labels"

    @property
    def dlq(self) -> str:
        return f"{self.pipeline}.dlq"

    @property
    def drift(self) -> str:
        return f"{self.pipeline}.drift"

    @property
    def ood(self) -> str:
        return f"{self.pipeline}.ood"

    @property
    def model_versions(self) -> str:
        return f"{self.pipeline}.model-versions"

    @property
    def label_requests(self) -> str:
        return f"{self.pipeline}.label-requests"

    @property
    def detector_summaries(self) -> str:
        """Per-partition detector summaries, merged by one owner (one partition)."""
        return f"{self.pipeline}.detector-summaries"

    def all(self) -> list[str]:
        return [
            self.inputs,
            self.labels,
            self.dlq,
            self.drift,
            self.ood,
            self.model_versions,
            self.label_requests,
            self.detector_summaries,
        ]
