"""The built-in demo scenario: handwritten digits whose inputs drift at known points.

scikit-learn ships the 8x8 digits images (1,797 of them, 64 pixel features), so the demo needs
no download. The stream samples them with replacement in segments of about ``segment_rows``
rows (uneven, so drifts do not fall on the rows a periodic schedule retrains at); each
segment is one *concept*:

=====  ===============  ===========================================================
#      concept          what changed
=====  ===============  ===========================================================
0      A  clean         nothing: the training distribution
1      B  noisy         a worn sensor: a tenth of the pixels stuck at full ink
2      C  shifted       the camera moved: every image two pixels to the right
3      A  clean         the old camera is back: concept A *recurs*
4      D  class mix     same images, but only the digits 0-4 arrive
=====  ===============  ===========================================================

Labels arrive ``label_delay`` rows after their inputs, as ground truth does in production.
The changes are image-specific (stuck pixels, a camera shift, a class mix), so they are made
here rather than with the generic tabular kinds of `driftline.streams.evaluation.scenarios`.

>>> s = digits_scenario(segment_rows=300)
>>> s.X.shape, [seg.concept for seg in s.segments], [seg.start for seg in s.drifts]
((1575, 64), ['A', 'B', 'C', 'A', 'D'], [360, 645, 975, 1290])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from driftline.config.pipeline import PipelineConfig
from driftline.streams.embedded.runner import LabelledStream
from driftline.streams.evaluation.backtest import ProgressFactory, backtest, policy_configs
from driftline.streams.evaluation.composite import Concept
from driftline.streams.evaluation.report import Report

__all__ = [
    "DEMO_PIPELINE",
    "DIGIT_FEATURES",
    "Scenario",
    "Segment",
    "demo_config",
    "digits_scenario",
    "run_demo",
]

DEMO_PIPELINE = "digits-demo"

DIGIT_FEATURES = [f"px{r}{c}" for r in range(8) for c in range(8)]
"""Feature names of the digits stream: ``px{row}{column}`` of the 8x8 image."""

_INK = 16.0
_STUCK_FRACTION = 0.1
_SHIFT_PIXELS = 2
_MIX_CLASSES = (0, 1, 2, 3, 4)
# Concept lengths in units of segment_rows: uneven, so drifts do not fall on the rows a
# periodic schedule happens to retrain at.
_LENGTHS = (1.2, 0.95, 1.1, 1.05, 0.95)


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, end)`` of the stream drawn from one concept."""

    start: int
    end: int
    concept: str
    kind: str
    description: str


@dataclass(frozen=True)
class Scenario:
    """A labelled stream with its concepts, as the embedded runner replays it.

    Row ``i`` happens at ``t0 + i * step``; its label arrives ``label_delay`` rows later.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    segments: tuple[Segment, ...]
    label_delay: int
    segment_rows: int
    t0: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    step: timedelta = timedelta(seconds=1)

    @property
    def drifts(self) -> list[Segment]:
        """Every segment after the first: where the inputs changed."""
        return list(self.segments[1:])

    def event_time(self, row: int) -> datetime:
        """When row ``row`` happened."""
        return self.t0 + row * self.step

    def stream(self) -> LabelledStream:
        """The rows, labels and event times as the embedded runner replays them."""
        return LabelledStream.from_arrays(
            self.X,
            self.y,
            self.feature_names,
            label_delay=self.label_delay,
            t0=self.t0,
            step=self.step,
            event_ids=[f"{self.name}-{i}" for i in range(len(self.X))],
        )

    def concepts(self) -> list[Concept]:
        """The segments as the evaluation and the report know them."""
        return [
            Concept(
                start=s.start, end=s.end, concept=s.concept, kind=s.kind, description=s.description
            )
            for s in self.segments
        ]

    def concept_at(self, row: int) -> Segment:
        """The segment that row ``row`` belongs to."""
        for segment in self.segments:
            if segment.start <= row < segment.end:
                return segment
        raise IndexError(f"row {row} is outside the stream of {len(self.X)} rows")


def digits_scenario(segment_rows: int = 2000, label_delay: int = 200, seed: int = 0) -> Scenario:
    """The demo stream: concepts A, B (noise), C (shift), A again, D (class mix)."""
    from sklearn.datasets import load_digits

    if segment_rows < 10:
        raise ValueError(f"segment_rows must be >= 10 rows, got {segment_rows}")
    if label_delay < 0:
        raise ValueError(f"label_delay must be >= 0 rows, got {label_delay}")
    digits = load_digits()
    images = np.asarray(digits.data, dtype=np.float64)
    labels = np.asarray(digits.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    plan = [
        ("A", "clean", "clean digits (the training distribution)"),
        ("B", "noise", f"{_STUCK_FRACTION:.0%} of pixels stuck at full ink"),
        ("C", "pixel-shift", f"images shifted {_SHIFT_PIXELS} pixels to the right"),
        ("A", "clean", "clean digits again (concept A recurs)"),
        ("D", "class-mix", f"only digits {_MIX_CLASSES[0]}-{_MIX_CLASSES[-1]} arrive"),
    ]
    X_parts, y_parts, segments = [], [], []
    start = 0
    for (concept, kind, description), share in zip(plan, _LENGTHS, strict=True):
        length = round(share * segment_rows)
        pool = np.isin(labels, _MIX_CLASSES) if kind == "class-mix" else np.ones(len(labels), bool)
        rows = rng.choice(np.flatnonzero(pool), size=length, replace=True)
        X_parts.append(_apply(kind, images[rows], rng))
        y_parts.append(labels[rows])
        segments.append(Segment(start, start + length, concept, kind, description))
        start += length
    return Scenario(
        name="digits",
        X=np.concatenate(X_parts),
        y=np.concatenate(y_parts),
        feature_names=list(DIGIT_FEATURES),
        segments=tuple(segments),
        label_delay=label_delay,
        segment_rows=segment_rows,
    )


def _apply(kind: str, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        out = X.copy()
        out[rng.random(X.shape) < _STUCK_FRACTION] = _INK
        return out
    if kind == "pixel-shift":
        images = X.reshape(-1, 8, 8)
        shifted = np.zeros_like(images)
        shifted[:, :, _SHIFT_PIXELS:] = images[:, :, :-_SHIFT_PIXELS]
        return shifted.reshape(-1, 64)
    return X.copy()


def demo_config(label_delay: int = 200) -> PipelineConfig:
    """The demo's pipeline: the library defaults and nothing else.

    Nothing here is chosen for the digits stream (``label_delay`` is accepted so callers
    may pass the scenario's, but the defaults need no adjustment for it): the drift episode
    trains on rows from the estimated change point on, waits for their labels, and the
    paired-test gate decides, so the same config serves any stream.

    >>> c = demo_config()
    >>> c == PipelineConfig(name=DEMO_PIPELINE)
    True
    """
    return PipelineConfig(name=DEMO_PIPELINE)


def run_demo(
    out_dir: Path,
    *,
    scenario: Scenario | None = None,
    config: PipelineConfig | None = None,
    periodic_rows: int | None = None,
    progress: ProgressFactory | None = None,
) -> Report:
    """Run the demo scenario under the drift-triggered, periodic and never-retrain policies.

    ``config`` defaults to `demo_config`; the periodic baseline retrains every
    ``periodic_rows`` rows (default: twice per concept).
    """
    scenario = scenario or digits_scenario()
    config = config or demo_config(scenario.label_delay)
    segment = scenario.segment_rows
    every = periodic_rows or max(1, segment // 2)
    configs = policy_configs(config, periodic_rows=every)
    return backtest(
        scenario.stream(),
        configs,
        out_dir,
        title="driftline demo: handwritten digits with drifts injected at known rows",
        description=(
            f"{len(scenario.X)} rows of scikit-learn's digits in {len(scenario.segments)} "
            f"concepts of about {segment} rows; labels arrive {scenario.label_delay} rows late; "
            f"the periodic baseline retrains every {every} rows"
        ),
        concepts=scenario.concepts(),
        progress=progress,
    )
