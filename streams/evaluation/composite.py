"""Composite-model evaluation (Modyn): judge a whole run, not one model.

A run deploys a sequence of models. Its *composite model* is, at each row of the stream, the
model that was live when that row arrived. Its accuracy over time, next to what its trainings
cost, is how two policies (drift-triggered, periodic, never-retrain, or two user configs) are
compared on one chart: a policy that trains less for the same composite accuracy wins.

Rows are scored prequentially: a row is predicted by the model that was live before its label
could have been used, so no policy is credited for what it could not yet know.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 1, 1])
>>> models = {"a": lambda X: np.zeros(len(X)), "b": lambda X: np.ones(len(X))}
>>> acc = composite_accuracy(y, np.zeros((6, 1)), [LiveSpan(0, "a"), LiveSpan(4, "b")],
...                          lambda mv, X: models[mv](X), window=2)
>>> acc.window_accuracy, acc.mean_accuracy
([1.0, 0.0, 1.0], 0.6666666666666666)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = [
    "CompositeAccuracy",
    "Concept",
    "DeploymentGain",
    "Detection",
    "LiveSpan",
    "PolicyScore",
    "TrainingCost",
    "clean_stretches",
    "composite_accuracy",
    "deployment_gains",
    "detections",
    "false_alarms",
    "wrong_model_rows",
]

Predict = Callable[[str, np.ndarray], np.ndarray]
"""``predict(model_version_id, X) -> predictions`` for the rows ``X``."""


@dataclass(frozen=True)
class LiveSpan:
    """From row ``start`` on (until the next span), ``model_version_id`` served predictions."""

    start: int
    model_version_id: str


class CompositeAccuracy(BaseModel):
    """Accuracy of the composite model per window of rows, and over all scored rows.

    Windows before the first deployment have accuracy ``None`` (no model served them).
    """

    model_config = ConfigDict(frozen=True)

    window: int
    window_starts: list[int]
    window_accuracy: list[float | None]
    mean_accuracy: float
    rows_scored: int


class TrainingCost(BaseModel):
    """What a run spent on training: completed trainings, their wall time and rows."""

    model_config = ConfigDict(frozen=True)

    trainings: int
    deployments: int
    skipped: int
    training_seconds: float
    rows_trained: int


class PolicyScore(BaseModel):
    """One policy's composite accuracy and training cost, ready to chart against others."""

    model_config = ConfigDict(frozen=True)

    policy: str
    accuracy: CompositeAccuracy
    cost: TrainingCost


def composite_accuracy(
    y_true: np.ndarray,
    X: np.ndarray,
    spans: Sequence[LiveSpan],
    predict: Predict,
    *,
    window: int = 250,
    start: int = 0,
) -> CompositeAccuracy:
    """Score each row of ``X`` with the model live at that row; aggregate per ``window`` rows.

    ``spans`` must be sorted by ``start``; rows from ``start`` on are scored (use it to give
    every policy the same warm-up). ``mean_accuracy`` is over scored rows, not windows.
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    if len(X) != n:
        raise ValueError(f"X has {len(X)} rows but y_true has {n}: pass the same rows for both")
    if window < 1:
        raise ValueError(f"window must be >= 1 row, got {window}")
    starts = [s.start for s in spans]
    if starts != sorted(starts):
        raise ValueError(f"spans must be sorted by start row, got starts {starts}")
    correct = np.full(n, np.nan)
    for i, span in enumerate(spans):
        lo = max(span.start, start)
        hi = spans[i + 1].start if i + 1 < len(spans) else n
        if lo >= min(hi, n):
            continue
        predicted = np.asarray(predict(span.model_version_id, X[lo:hi]))
        correct[lo:hi] = predicted == y_true[lo:hi]
    window_starts = list(range(0, n, window))
    per_window: list[float | None] = []
    for lo in window_starts:
        chunk = correct[lo : lo + window]
        scored = chunk[~np.isnan(chunk)]
        per_window.append(float(scored.mean()) if scored.size else None)
    scored_all = correct[~np.isnan(correct)]
    return CompositeAccuracy(
        window=window,
        window_starts=window_starts,
        window_accuracy=per_window,
        mean_accuracy=float(scored_all.mean()) if scored_all.size else float("nan"),
        rows_scored=int(scored_all.size),
    )


class Concept(BaseModel):
    """Rows ``[start, end)`` of a stream drawn from one known concept (an injected drift starts
    one)."""

    model_config = ConfigDict(frozen=True)

    start: int
    end: int
    concept: str
    kind: str = ""
    description: str = ""


class Detection(BaseModel):
    """An injected drift and the first alarm raised while its concept lasted (if any)."""

    model_config = ConfigDict(frozen=True)

    drift: Concept
    alarm_row: int | None
    delay: int | None


class DeploymentGain(BaseModel):
    """Accuracy on the rows a deployment served, of the model it replaced and of itself.

    Scored on the rows from the deployment to the next one or the end of the concept,
    whichever comes first: the drifted data the new model was deployed for.
    """

    model_config = ConfigDict(frozen=True)

    row: int
    model_version_id: str
    previous_model_version_id: str
    concept: str
    rows_scored: int
    accuracy_before: float
    accuracy_after: float


def detections(concepts: Sequence[Concept], alarm_rows: Sequence[int]) -> list[Detection]:
    """For every concept after the first, the first alarm inside it and its delay in rows.

    >>> cs = [Concept(start=0, end=100, concept="A"), Concept(start=100, end=200, concept="B")]
    >>> [(d.alarm_row, d.delay) for d in detections(cs, [130, 150])]
    [(130, 30)]
    """
    out = []
    for concept in concepts[1:]:
        inside = [r for r in sorted(alarm_rows) if concept.start <= r < concept.end]
        first = inside[0] if inside else None
        out.append(
            Detection(
                drift=concept,
                alarm_row=first,
                delay=None if first is None else first - concept.start,
            )
        )
    return out


def clean_stretches(
    concepts: Sequence[Concept], deployment_rows: Sequence[int]
) -> list[tuple[int, int]]:
    """Row ranges where the live reference matches the stream, so any alarm is a false one.

    The first concept is clean from its start (the reference is fitted on it); a later one
    from the first deployment inside it (the new champion's data is the new reference) to
    its end. Before that deployment the stream *has* drifted from the reference.

    >>> cs = [Concept(start=0, end=100, concept="A"), Concept(start=100, end=200, concept="B")]
    >>> clean_stretches(cs, [0, 140])
    [(0, 100), (140, 200)]
    """
    stretches = []
    for i, concept in enumerate(concepts):
        if i == 0:
            stretches.append((concept.start, concept.end))
            continue
        inside = [r for r in sorted(deployment_rows) if concept.start <= r < concept.end]
        if inside:
            stretches.append((inside[0], concept.end))
    return stretches


def false_alarms(alarm_rows: Sequence[int], stretches: Sequence[tuple[int, int]]) -> list[int]:
    """The alarms raised inside clean stretches.

    >>> false_alarms([50, 120, 150], [(0, 100), (140, 200)])
    [50, 150]
    """
    return [r for r in alarm_rows if any(lo <= r < hi for lo, hi in stretches)]


def deployment_gains(
    y_true: np.ndarray,
    X: np.ndarray,
    spans: Sequence[LiveSpan],
    predict: Predict,
    concepts: Sequence[Concept],
) -> list[DeploymentGain]:
    """For each deployment after the first, old vs new model on the rows the new one served
    within its concept.

    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1])
    >>> models = {"a": np.zeros, "b": np.ones}
    >>> gains = deployment_gains(y, np.zeros((4, 1)), [LiveSpan(0, "a"), LiveSpan(2, "b")],
    ...     lambda mv, X: models[mv](len(X)), [Concept(start=0, end=4, concept="A")])
    >>> [(g.accuracy_before, g.accuracy_after) for g in gains]
    [(0.0, 1.0)]
    """
    y_true = np.asarray(y_true)
    gains = []
    for i in range(1, len(spans)):
        span = spans[i]
        concept = next((c for c in concepts if c.start <= span.start < c.end), None)
        end = spans[i + 1].start if i + 1 < len(spans) else len(y_true)
        if concept is not None:
            end = min(end, concept.end)
        if end <= span.start:
            continue
        rows = slice(span.start, end)
        previous = spans[i - 1].model_version_id
        gains.append(
            DeploymentGain(
                row=span.start,
                model_version_id=span.model_version_id,
                previous_model_version_id=previous,
                concept=concept.concept if concept is not None else "",
                rows_scored=end - span.start,
                accuracy_before=float(np.mean(predict(previous, X[rows]) == y_true[rows])),
                accuracy_after=float(
                    np.mean(predict(span.model_version_id, X[rows]) == y_true[rows])
                ),
            )
        )
    return gains


def wrong_model_rows(
    y_true: np.ndarray,
    X: np.ndarray,
    spans: Sequence[LiveSpan],
    predict: Predict,
    concepts: Sequence[Concept],
    *,
    tolerance: float = 0.05,
    start: int = 0,
) -> int:
    """Rows (from ``start`` on) served by a *wrong model*: one whose accuracy on the rows of
    the row's concept segment is more than ``tolerance`` below the best of the run's deployed
    models there. Counts the price of serving, e.g., B's model while A has come back.

    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1])
    >>> models = {"a": np.zeros, "b": np.ones}
    >>> wrong_model_rows(y, np.zeros((4, 1)), [LiveSpan(0, "a"), LiveSpan(3, "b")],
    ...     lambda mv, X: models[mv](len(X)),
    ...     [Concept(start=0, end=2, concept="A"), Concept(start=2, end=4, concept="B")])
    1
    """
    y_true = np.asarray(y_true)
    ids = list(dict.fromkeys(s.model_version_id for s in spans))
    wrong = 0
    for concept in concepts:
        lo, hi = max(concept.start, start), min(concept.end, len(y_true))
        if hi <= lo:
            continue
        rows = slice(lo, hi)
        accuracy = {m: float(np.mean(predict(m, X[rows]) == y_true[rows])) for m in ids}
        best = max(accuracy.values(), default=0.0)
        for i, span in enumerate(spans):
            end = spans[i + 1].start if i + 1 < len(spans) else len(y_true)
            served = min(end, hi) - max(span.start, lo)
            if served > 0 and accuracy[span.model_version_id] < best - tolerance:
                wrong += served
    return wrong
