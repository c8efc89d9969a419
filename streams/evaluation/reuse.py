"""What label-free reuse of a recurring concept saves: one stream, reuse on vs off.

Both runs use the same pipeline config, except ``reuse_alpha`` of the drift trigger
(``None`` turns reuse off). Each is scored like any back-test (composite accuracy from the
common first deployment on) plus the rows served by a wrong model
(:func:`~driftline.streams.evaluation.composite.wrong_model_rows`) and the reuses fired.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from driftline.config.pipeline import DriftTriggerConfig, PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.streams.embedded.runner import LabelledStream
from driftline.streams.evaluation.backtest import ModelCache, backtest
from driftline.streams.evaluation.composite import Concept, LiveSpan, wrong_model_rows

__all__ = ["ReuseComparison", "compare_reuse", "without_reuse"]


class ReuseComparison(BaseModel):
    """Composite accuracy, wrong-model rows, trainings and reuses with reuse on and off."""

    model_config = ConfigDict(frozen=True)

    stream: str
    accuracy_on: float
    accuracy_off: float
    wrong_rows_on: int
    wrong_rows_off: int
    trainings_on: int
    trainings_off: int
    reuse_rows: list[int]

    @property
    def saved(self) -> float:
        """Composite accuracy reuse adds (negative: it cost accuracy)."""
        return self.accuracy_on - self.accuracy_off


def without_reuse(config: PipelineConfig) -> PipelineConfig:
    """``config`` with label-free reuse turned off in every drift trigger.

    >>> without_reuse(PipelineConfig(name="p")).triggers[0].reuse_alpha is None
    True
    """
    triggers = [
        t.model_copy(update={"reuse_alpha": None}) if isinstance(t, DriftTriggerConfig) else t
        for t in config.triggers
    ]
    return config.model_copy(update={"triggers": triggers})


def compare_reuse(
    name: str,
    stream: LabelledStream,
    concepts: Sequence[Concept],
    config: PipelineConfig,
    out_dir: Path,
    *,
    reuse_off: bool = True,
) -> ReuseComparison:
    """Back-test ``stream`` with reuse on (and off, unless ``reuse_off=False``)."""
    configs = {"reuse": config}
    if reuse_off:
        configs["no-reuse"] = without_reuse(config)
    report = backtest(stream, configs, out_dir, title=name, concepts=concepts, primary="reuse")
    scores = {s.policy: s for s in report.scores}
    start = max(r.deployments[0].row for r in report.runs if r.deployments)
    wrong: dict[str, int] = {}
    for run in report.runs:
        home = out_dir / run.policy
        with LifecycleStore.open(
            f"sqlite:///{home / 'store.db'}", artifacts=str(home / "artifacts")
        ) as store:
            spans = [LiveSpan(d.row, d.model_version_id) for d in run.deployments]
            wrong[run.policy] = wrong_model_rows(
                stream.y, stream.X, spans, ModelCache(store).predict, concepts, start=start
            )
    on = report.run("reuse")
    off = scores.get("no-reuse")
    return ReuseComparison(
        stream=name,
        accuracy_on=scores["reuse"].accuracy.mean_accuracy,
        accuracy_off=float("nan") if off is None else off.accuracy.mean_accuracy,
        wrong_rows_on=wrong["reuse"],
        wrong_rows_off=wrong.get("no-reuse", -1),
        trainings_on=scores["reuse"].cost.trainings,
        trainings_off=-1 if off is None else off.cost.trainings,
        reuse_rows=[t.row for t in on.trainings if t.status == "REUSED"],
    )
