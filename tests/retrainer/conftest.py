"""Factories for retrainer tests: a real store, archived concepts with labels, drift events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import DriftEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N_FEATURES = 8
FEATURES = [f"f{i}" for i in range(N_FEATURES)]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # Tests share two cores with other test runs; one thread is also deterministic.
    torch.set_num_threads(1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LifecycleStore]:
    s = LifecycleStore.open(f"sqlite:///{tmp_path}/store.db", artifacts=tmp_path / "artifacts")
    yield s
    s.close()


def noisy(
    x: np.ndarray, y: np.ndarray, seed: int, rate: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """``y`` with a fraction ``rate`` of labels replaced by random classes."""
    rng = np.random.default_rng(seed)
    flip = rng.random(len(y)) < rate
    y = y.copy()
    y[flip] = rng.integers(0, 3, int(flip.sum()))
    return x, y


def concept(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a named concept: its own input region and its own labelling rule.

    ``A`` and ``B`` differ in where inputs lie (so their core sets are far apart) and in how
    classes are assigned (so a model of one is poor on the other).
    """
    rng = np.random.default_rng(seed)
    rules = np.random.default_rng(1234).normal(size=(2, N_FEATURES, 3))
    shift = {"A": 0.0, "B": 2.5}[name]
    x = rng.normal(size=(n, N_FEATURES))
    x[:, :4] += shift
    w = rules[0] if name == "A" else rules[1]
    y = np.argmax((x - shift * (np.arange(N_FEATURES) < 4)) @ w, axis=1)
    return x, y


class Feed:
    """Writes rows (and optionally their labels) to a pipeline's archive in event time."""

    def __init__(self, store: LifecycleStore, pipeline: str) -> None:
        self.store = store
        self.pipeline = pipeline
        self.clock = T0
        self.offset = 0

    def rows(
        self, x: np.ndarray, y: np.ndarray | None, *, labelled: float = 1.0, seed: int = 0
    ) -> tuple[datetime, datetime, list[str]]:
        """Archive rows one second apart; label a ``labelled`` fraction of them."""
        n = len(x)
        start = self.clock
        times = [start + timedelta(seconds=i) for i in range(n)]
        ids = [f"e{self.offset + i}" for i in range(n)]
        cols: dict[str, object] = {
            "event_id": ids,
            "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
        for j, f in enumerate(FEATURES):
            cols[f] = x[:, j].astype(float)
        cols["topic"] = [f"{self.pipeline}.inputs"] * n
        cols["partition"] = [0] * n
        cols["offset"] = list(range(self.offset, self.offset + n))
        self.store.archive(self.pipeline).append_rows(pa.table(cols))
        if y is not None and labelled > 0:
            keep = np.random.default_rng(seed).random(n) < labelled
            self.labels([i for i, k in zip(ids, keep, strict=True) if k], y[keep], times[-1])
        self.offset += n
        self.clock = times[-1] + timedelta(seconds=1)
        return start, times[-1], ids

    def labels(self, ids: list[str], y: np.ndarray, at: datetime) -> None:
        if not ids:
            return
        self.store.archive(self.pipeline).append_labels(
            pa.table(
                {
                    "event_id": ids,
                    "label": pa.array(np.asarray(y).tolist()),
                    "timestamp": pa.array([at] * len(ids), pa.timestamp("us", tz="UTC")),
                }
            )
        )


@pytest.fixture
def feed_factory(store: LifecycleStore) -> Callable[[str], Feed]:
    def make(pipeline: str) -> Feed:
        store.ensure_pipeline(pipeline, FEATURES, {})
        return Feed(store, pipeline)

    return make


def drift_event(
    pipeline: str,
    reference: str | None,
    start: datetime,
    end: datetime,
    *,
    statistic: float = 3.0,
    threshold: float = 1.0,
    drift_id: str | None = None,
    deployment: str | None = None,
) -> DriftEvent:
    return DriftEvent(
        drift_id=drift_id or f"d-{uuid.uuid4().hex[:10]}",
        pipeline=pipeline,
        detector="mmd",
        statistic=statistic,
        threshold=threshold,
        window_start=start,
        window_end=end,
        rows_seen=1000,
        reference_data_version=reference,
        reference_deployment_id=deployment,
    )
