"""Labelled streams the demo does not contain, for the retraining benchmark and tests.

Every stream is built from data scikit-learn ships or generates (no download), with a
known change at known rows. Run ``python -m driftline.streams.evaluation.benchmark_streams``
to print, per stream, composite accuracy and trainings of the drift, periodic and never
policies, all on ``PipelineConfig(name=...)`` defaults — nothing is tuned to a stream.

>>> sorted(STREAMS)  # doctest: +NORMALIZE_WHITESPACE
['breast-cancer-seasonal', 'breast-cancer-subpopulation', 'digits-rotation', 'false-alarm',
 'gaussian-recurring', 'label-shift', 'many-class-swap', 'wine-gradual']
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from driftline.config.pipeline import PipelineConfig
from driftline.streams.embedded.runner import LabelledStream
from driftline.streams.evaluation.backtest import backtest, policy_configs
from driftline.streams.evaluation.composite import Concept
from driftline.streams.evaluation.report import Report

__all__ = ["STREAMS", "run_stream"]

LABEL_DELAY = 200


def _concept(
    seed: int, n: int, d: int, rule: np.ndarray, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, : d // 2] += shift
    y = (np.tanh(x @ rule) + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return x, y


def gaussian_recurring() -> tuple[LabelledStream, list[Concept]]:
    """A -> B -> A: inputs move and the labelling rule changes; then A comes back."""
    d = 10
    rules = np.random.default_rng(7).normal(size=(2, d))
    parts = [(0, rules[0], 0.0, "A"), (1, rules[1], 1.5, "B"), (2, rules[0], 0.0, "A")]
    xs, ys, concepts, start = [], [], [], 0
    for i, (seed, rule, shift, name) in enumerate(parts):
        n = 4000 if i == 0 else 3000
        x, y = _concept(seed, n, d, rule, shift)
        xs.append(x)
        ys.append(y)
        concepts.append(Concept(start=start, end=start + n, concept=name, kind="sudden"))
        start += n
    return _stream(np.vstack(xs), np.concatenate(ys), "g"), concepts


def wine_gradual() -> tuple[LabelledStream, list[Concept]]:
    """Wine (13 features, 3 classes) resampled; a sensor drifts in gradually over 1500 rows
    and the class balance shifts (label shift) at the same time."""
    from sklearn.datasets import load_wine

    data = load_wine()
    rng = np.random.default_rng(1)
    x0 = (data.data - data.data.mean(0)) / data.data.std(0)
    n, change, ramp = 9000, 4000, 1500
    idx_before = rng.choice(len(x0), change)
    weights = np.where(data.target == 0, 3.0, 1.0)
    idx_after = rng.choice(len(x0), n - change, p=weights / weights.sum())
    idx = np.concatenate([idx_before, idx_after])
    x = x0[idx] + rng.normal(0, 0.3, size=(n, x0.shape[1]))
    y = data.target[idx]
    w = np.clip((np.arange(n) - change) / ramp, 0, 1)
    # The drifting sensors read the class-0 signal inverted once fully drifted.
    x[:, :4] = x[:, :4] * (1 - 2 * w[:, None]) + 1.5 * w[:, None]
    concepts = [
        Concept(start=0, end=change, concept="clean"),
        Concept(start=change, end=n, concept="drifted", kind="gradual+label-shift"),
    ]
    return _stream(x, y, "w"), concepts


def breast_cancer_subpopulation() -> tuple[LabelledStream, list[Concept]]:
    """Breast cancer (30 features): a subpopulation (large tumours) becomes 80% of traffic."""
    from sklearn.datasets import load_breast_cancer

    from driftline.streams.evaluation.scenarios import inject

    data = load_breast_cancer()
    rng = np.random.default_rng(2)
    x0 = (data.data - data.data.mean(0)) / data.data.std(0)
    n, change = 8000, 4000
    idx = rng.choice(len(x0), n)
    x = x0[idx] + rng.normal(0, 0.2, size=(n, x0.shape[1]))
    y = data.target[idx]
    x, y = inject(x, "subpopulation", start=change, magnitude=0.8, features=[0], y=y)
    concepts = [
        Concept(start=0, end=change, concept="all"),
        Concept(start=change, end=n, concept="large tumours", kind="subpopulation"),
    ]
    return _stream(x, y, "b"), concepts


def breast_cancer_seasonal() -> tuple[LabelledStream, list[Concept]]:
    """Breast cancer (30 features), two sensor calibrations taking turns: A, B, A, B, A.

    In B the first ten sensors read inverted and offset (a recalibrated instrument), so each
    calibration's model is poor on the other's rows; both come back, twice for A."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(3)
    x0 = (data.data - data.data.mean(0)) / data.data.std(0)
    seg, names = 2000, ["A", "B", "A", "B", "A"]
    idx = rng.choice(len(x0), seg * len(names))
    x = x0[idx] + rng.normal(0, 0.2, size=(len(idx), x0.shape[1]))
    y = data.target[idx]
    concepts = []
    for i, name in enumerate(names):
        lo, hi = i * seg, (i + 1) * seg
        if name == "B":
            x[lo:hi, :10] = 1.0 - x[lo:hi, :10]
        concepts.append(Concept(start=lo, end=hi, concept=name, kind="sudden" if i else ""))
    return _stream(x, y, "s"), concepts


def false_alarm() -> tuple[LabelledStream, list[Concept]]:
    """No change at all: any training is wasted."""
    d = 10
    rule = np.random.default_rng(9).normal(size=d)
    x, y = _concept(4, 10000, d, rule, 0.0)
    return _stream(x, y, "f"), [Concept(start=0, end=10000, concept="A")]


def label_shift() -> tuple[LabelledStream, list[Concept]]:
    """Prior-probability shift: each class's inputs keep their distribution, but class 1
    goes from half of the traffic to 85% of it (``make_classification``, 8 features,
    overlapping classes, so the best decision boundary moves with the priors)."""
    from sklearn.datasets import make_classification

    x0, y0 = make_classification(
        n_samples=20000,
        n_features=8,
        n_informative=5,
        n_redundant=1,
        class_sep=0.7,
        flip_y=0.02,
        random_state=11,
    )
    rng = np.random.default_rng(11)
    n, change = 10000, 4000
    by_class = [np.flatnonzero(y0 == c) for c in (0, 1)]

    def draw(rows: int, p1: float) -> np.ndarray:
        ones = rng.random(rows) < p1
        idx = np.empty(rows, dtype=np.int64)
        idx[~ones] = rng.choice(by_class[0], int((~ones).sum()))
        idx[ones] = rng.choice(by_class[1], int(ones.sum()))
        return idx

    idx = np.concatenate([draw(change, 0.5), draw(n - change, 0.85)])
    x = x0[idx] + rng.normal(0, 0.1, size=(n, x0.shape[1]))
    concepts = [
        Concept(start=0, end=change, concept="balanced"),
        Concept(start=change, end=n, concept="85% class 1", kind="label-shift"),
    ]
    return _stream(x, y0[idx].astype(np.int64), "l"), concepts


def digits_rotation() -> tuple[LabelledStream, list[Concept]]:
    """Digits (8x8 images, 64 features, 10 classes) resampled; from row 4000 on the camera is
    mounted rotated by 90 degrees (a sudden shift on real data)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(5)
    n, change = 9000, 4000
    idx = rng.choice(len(data.target), n)
    images = data.images[idx] / 16.0
    images[change:] = np.rot90(images[change:], k=1, axes=(1, 2))
    x = images.reshape(n, 64) + rng.normal(0, 0.05, size=(n, 64))
    concepts = [
        Concept(start=0, end=change, concept="upright"),
        Concept(start=change, end=n, concept="rotated", kind="sudden"),
    ]
    return _stream(x, data.target[idx].astype(np.int64), "d"), concepts


def many_class_swap() -> tuple[LabelledStream, list[Concept]]:
    """Eight classes over 24 features (``make_classification``); from row 4000 on the rows
    come from another generator with other class centres (a new product line, say): a
    sudden change of inputs and labelling rule, wider and with more classes than the
    other synthetic streams."""
    from sklearn.datasets import make_classification

    def draw(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = make_classification(
            n_samples=rows,
            n_features=24,
            n_informative=16,
            n_redundant=4,
            n_classes=8,
            n_clusters_per_class=1,
            class_sep=1.5,
            random_state=seed,
        )
        return x, y.astype(np.int64)

    n, change = 9000, 4000
    (xa, ya), (xb, yb) = draw(21, change), draw(22, n - change)
    concepts = [
        Concept(start=0, end=change, concept="A"),
        Concept(start=change, end=n, concept="B", kind="sudden"),
    ]
    return _stream(np.vstack([xa, xb]), np.concatenate([ya, yb]), "m"), concepts


def _stream(x: np.ndarray, y: np.ndarray, prefix: str) -> LabelledStream:
    names = [f"{prefix}{i}" for i in range(x.shape[1])]
    return LabelledStream.from_arrays(x, y, names, label_delay=LABEL_DELAY)


STREAMS: dict[str, Callable[[], tuple[LabelledStream, list[Concept]]]] = {
    "gaussian-recurring": gaussian_recurring,
    "wine-gradual": wine_gradual,
    "breast-cancer-subpopulation": breast_cancer_subpopulation,
    "false-alarm": false_alarm,
    "breast-cancer-seasonal": breast_cancer_seasonal,
    "label-shift": label_shift,
    "digits-rotation": digits_rotation,
    "many-class-swap": many_class_swap,
}


def run_stream(name: str, out_dir: Path, periodic_rows: int = 1000) -> Report:
    """Back-test one stream under drift / periodic / never on default settings."""
    stream, concepts = STREAMS[name]()
    configs = policy_configs(PipelineConfig(name=name), periodic_rows=periodic_rows)
    return backtest(stream, configs, out_dir, title=name, concepts=concepts)


def main(argv: list[str]) -> None:
    names = argv or list(STREAMS)
    out = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    print(
        "| stream | drift acc | drift trainings | periodic acc | periodic trainings "
        "| never acc | never trainings |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        report = run_stream(name, out / name)
        s = {sc.policy: sc for sc in report.scores}
        print(
            f"| {name} | {s['drift'].accuracy.mean_accuracy:.4f} | {s['drift'].cost.trainings} "
            f"| {s['periodic'].accuracy.mean_accuracy:.4f} | {s['periodic'].cost.trainings} "
            f"| {s['never'].accuracy.mean_accuracy:.4f} | {s['never'].cost.trainings} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
