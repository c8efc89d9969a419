"""Back-tests: replay one labelled stream under several policies and compare them.

Each policy runs in its own fresh lifecycle store (SQLite + a local artifact directory under
the run directory) through the `EmbeddedRunner`, so the runs cannot see each other. Then
every run is scored the Modyn way: the composite accuracy of the models it had live at each
row, against the trainings it paid for. Two baselines frame the user's policy:

* ``periodic``: the same pipeline, but retraining every ``periodic_rows`` rows whatever the
  data does (a data-amount trigger instead of the drift trigger);
* ``never``: only the first (bootstrap) model, never retrained.

>>> from driftline.config.pipeline import PipelineConfig
>>> sorted(policy_configs(PipelineConfig(name="p"), periodic_rows=1000))
['drift', 'never', 'periodic']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from driftline.config.pipeline import DataAmountTriggerConfig, PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.adapters import Budget, load_adapter, make_adapter
from driftline.streams.embedded.runner import EmbeddedRunner, LabelledStream, Progress, RunResult
from driftline.streams.evaluation.composite import (
    Concept,
    LiveSpan,
    PolicyScore,
    TrainingCost,
    clean_stretches,
    composite_accuracy,
    deployment_gains,
    detections,
    false_alarms,
)
from driftline.streams.evaluation.report import Report, write_report

__all__ = ["ModelCache", "backtest", "policy_configs", "score_run"]

ProgressFactory = Callable[[str, int], Progress]
"""``factory(policy, total_rows)`` returns the progress callback of that policy's run."""


def policy_configs(
    config: PipelineConfig, *, periodic_rows: int, baselines: bool = True
) -> dict[str, PipelineConfig]:
    """The user's pipeline as policy ``drift``, plus the ``periodic`` and ``never`` baselines."""
    configs = {"drift": config}
    if baselines:
        periodic = [DataAmountTriggerConfig(rows=periodic_rows)]
        configs["periodic"] = config.model_copy(update={"triggers": periodic})
        configs["never"] = config.model_copy(update={"triggers": []})
    return configs


class ModelCache:
    """Load each model version of a store once, for scoring many rows with it."""

    def __init__(self, store: LifecycleStore) -> None:
        self.store = store
        self._models: dict[str, Any] = {}

    def predict(self, model_version_id: str, X: np.ndarray) -> np.ndarray:
        """Predictions of ``model_version_id`` for the rows ``X``."""
        model = self._models.get(model_version_id)
        if model is None:
            version = self.store.model_version(model_version_id)
            data = self.store.load_model_artifact(model_version_id)
            model = self._models[model_version_id] = load_adapter(version.framework, data)
        return np.asarray(model.predict(X))


def score_run(
    run: RunResult, stream: LabelledStream, models: ModelCache, *, window: int, start: int
) -> PolicyScore:
    """Composite accuracy of ``run`` over ``stream`` from row ``start`` on, and its cost."""
    spans = [LiveSpan(d.row, d.model_version_id) for d in run.deployments]
    accuracy = composite_accuracy(
        stream.y, stream.X, spans, models.predict, window=window, start=start
    )
    trained = [t for t in run.trainings if t.status == "COMPLETE"]
    return PolicyScore(
        policy=run.policy,
        accuracy=accuracy,
        cost=TrainingCost(
            trainings=len(trained),
            deployments=len(run.deployments),
            skipped=sum(t.status == "SKIPPED" for t in run.trainings),
            training_seconds=sum(t.seconds for t in trained),
            rows_trained=sum(t.rows for t in trained),
        ),
    )


def backtest(
    stream: LabelledStream,
    configs: dict[str, PipelineConfig],
    out_dir: Path,
    *,
    title: str,
    description: str = "",
    concepts: Sequence[Concept] = (),
    primary: str = "drift",
    batch_size: int = 100,
    window: int = 250,
    progress: ProgressFactory | None = None,
) -> Report:
    """Run every policy of ``configs`` on ``stream``; write and return the report."""
    if primary not in configs:
        raise ValueError(f"primary policy {primary!r} is not among {sorted(configs)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for config in configs.values():
        _warm_up(config, stream.X.shape[1])
    runs: dict[str, RunResult] = {}
    stores: dict[str, LifecycleStore] = {}
    try:
        for name, config in configs.items():
            home = out_dir / name
            home.mkdir(parents=True, exist_ok=True)
            store = stores[name] = LifecycleStore.open(
                f"sqlite:///{home / 'store.db'}", artifacts=str(home / "artifacts")
            )
            runner = EmbeddedRunner(config, store, batch_size=batch_size, policy=name)
            callback = None if progress is None else progress(name, len(stream))
            runs[name] = runner.replay(stream, callback)
        # Every policy starts from the same bootstrap model; score all from the latest first
        # deployment so none is credited or blamed for rows another had no model for.
        firsts = [r.deployments[0].row for r in runs.values() if r.deployments]
        start = max(firsts) if firsts else len(stream)
        scores, gains = [], []
        for name, run in runs.items():
            models = ModelCache(stores[name])
            scores.append(score_run(run, stream, models, window=window, start=start))
            if name == primary:
                spans = [LiveSpan(d.row, d.model_version_id) for d in run.deployments]
                gains = deployment_gains(stream.y, stream.X, spans, models.predict, concepts)
    finally:
        for store in stores.values():
            store.close()
    main = runs[primary]
    alarm_rows = [a.row for a in main.alarms]
    stretches = clean_stretches(concepts, [d.row for d in main.deployments])
    report = Report(
        title=title,
        description=description,
        rows=len(stream),
        primary=primary,
        concepts=list(concepts),
        runs=list(runs.values()),
        scores=scores,
        detections=detections(concepts, alarm_rows),
        false_alarms=false_alarms(alarm_rows, stretches),
        gains=gains,
        settings=_settings(configs[primary], stream, batch_size, window),
    )
    write_report(report, out_dir)
    return report


def _warm_up(config: PipelineConfig, n_features: int) -> None:
    """Fit a throwaway model once, so the first policy's first training does not also pay
    the framework's start-up (seconds for torch) and skew the training-time comparison."""
    classification = config.label.task == "classification"
    model = make_adapter(config.model.adapter)
    model.build(dict(config.model.params), n_features, [0, 1] if classification else None)
    X = np.random.default_rng(0).normal(size=(20, n_features))
    y = np.arange(20) % 2 if classification else X[:, 0]
    model.fit(X, y, budget=Budget(max_epochs=1, patience=None))


def _settings(
    config: PipelineConfig, stream: LabelledStream, batch_size: int, window: int
) -> dict[str, Any]:
    return {
        "rows": len(stream),
        "label delay (rows)": stream.label_delay,
        "micro-batch (rows)": batch_size,
        "accuracy window (rows)": window,
        "detector": f"{config.detector.kind}, ert={config.detector.ert}, "
        f"reference_rows={config.detector.reference_rows}",
        "triggers": ", ".join(t.kind for t in config.triggers) or "none",
        "selection": f"{config.selection.strategy}, max_rows={config.selection.max_rows}, "
        f"min_labelled_rows={config.selection.min_labelled_rows}",
        "model": f"{config.model.adapter}, epochs<={config.model.epochs}",
        "gate margin": config.gate.margin,
        "guard": f"{'on' if config.guard.enabled else 'off'} ({config.guard.mode})",
        "bootstrap_rows": config.bootstrap_rows,
    }
