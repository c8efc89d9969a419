"""The built-in demo scenario: handwritten digits whose inputs drift at known points.

scikit-learn ships the 8x8 digits images (1,797 of them, 64 pixel features), so the demo needs
no download. The stream samples them with replacement in segments of ``segment_rows`` rows;
each segment is one *concept*:

=====  ===============  ===========================================================
rows   concept          what changed
=====  ===============  ===========================================================
0      A  clean         nothing: the training distribution
1      B  noisy         a worn sensor: a fifth of the pixels stuck at full ink
2      C  shifted       the camera moved: every image two pixels to the right
3      A  clean         the old camera is back: concept A *recurs*
4      D  class mix     same images, but only the digits 0-4 arrive
=====  ===============  ===========================================================

Labels arrive ``label_delay`` rows after their inputs, as ground truth does in production.

>>> s = digits_scenario(segment_rows=300)
>>> s.X.shape, [seg.concept for seg in s.segments], s.drifts[2].start
((1500, 64), ['A', 'B', 'C', 'A', 'D'], 900)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

__all__ = ["DIGIT_FEATURES", "Scenario", "Segment", "digits_scenario"]

DIGIT_FEATURES = [f"px{r}{c}" for r in range(8) for c in range(8)]
"""Feature names of the digits stream: ``px{row}{column}`` of the 8x8 image."""

_INK = 16.0
_STUCK_FRACTION = 0.2
_SHIFT_PIXELS = 2
_MIX_CLASSES = (0, 1, 2, 3, 4)


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
    t0: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    step: timedelta = timedelta(seconds=1)

    @property
    def drifts(self) -> list[Segment]:
        """Every segment after the first: where the inputs changed."""
        return list(self.segments[1:])

    def event_time(self, row: int) -> datetime:
        """When row ``row`` happened."""
        return self.t0 + row * self.step

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
    for i, (concept, kind, description) in enumerate(plan):
        pool = np.isin(labels, _MIX_CLASSES) if kind == "class-mix" else np.ones(len(labels), bool)
        rows = rng.choice(np.flatnonzero(pool), size=segment_rows, replace=True)
        X_parts.append(_apply(kind, images[rows], rng))
        y_parts.append(labels[rows])
        segments.append(
            Segment(i * segment_rows, (i + 1) * segment_rows, concept, kind, description)
        )
    return Scenario(
        name="digits",
        X=np.concatenate(X_parts),
        y=np.concatenate(y_parts),
        feature_names=list(DIGIT_FEATURES),
        segments=tuple(segments),
        label_delay=label_delay,
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
