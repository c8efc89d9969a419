"""Retrainer benchmarks: lifecycle transfer, drift-to-published latency, the guard on replays.

1. **Warm start on a recurring-concept stream (A -> B -> A).** The real retrainer runs the
   stream on a real store; at the return to A it picks a parent by core-set similarity. On
   the return's training data three fits race to the accuracy a from-scratch fit reaches:
   from scratch, from the *chosen* lifecycle, and from the *latest* model (B's). Epochs and
   seconds to reach it; the goal is chosen <= 1/3 of scratch. Two datasets: sklearn digits
   (real, B = pixels permuted and classes relabelled) and a synthetic nonlinear teacher.
2. **Drift event -> published model version** for the default MLP on 50k new rows (goal
   <= 15 s on CPU), warm-started from the similar lifecycle vs trained from scratch.
3. **Guard on replays.** A replay of drift alarms, half of them false (same concept), some
   recurring; the guard runs in shadow mode so every training still runs and its prediction
   can be scored against what the gate decided. Baseline: no guard (train on every alarm).

Run: ``python benchmarks/bench_retrainer.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from driftline.config.pipeline import PipelineConfig
from driftline.lifecycle_store import LifecycleStore
from driftline.retrainer.adapters import Budget, load_adapter, make_adapter
from driftline.retrainer.publisher import InMemoryPublisher
from driftline.retrainer.selection import feature_matrix
from driftline.retrainer.service import Retrainer
from driftline.schemas import DriftEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MAX_EPOCHS = 100


# ---------------------------------------------------------------------------- data
class Digits:
    """sklearn digits; concept B permutes the pixels and relabels the classes."""

    name = "digits (real, d=64)"
    d = 64

    def __init__(self, seed: int) -> None:
        from sklearn.datasets import load_digits

        data = load_digits()
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(data.target))
        self.x = data.data[order] / 16.0
        self.y = data.target[order]
        self.perm = np.random.default_rng(100 + seed).permutation(64)
        self.parts = np.array_split(np.arange(len(self.y)), 3)

    def segment(self, concept: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.parts[i]
        x, y = self.x[idx], self.y[idx]
        if concept == "B":
            return 1.0 - x[:, self.perm], (y + 3) % 10
        return x, y


class Teacher:
    """Inputs from a concept's own region, classes from its own random 2-layer network."""

    name = "synthetic teacher (d=32, 5 classes)"
    d = 32

    def __init__(self, seed: int, n: int = 6000) -> None:
        self.seed, self.n = seed, n

    def segment(self, concept: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        return teacher(concept, self.n, 1000 * self.seed + i, self.d)


def teacher(concept: str, n: int, seed: int, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    k = "ABC".index(concept)
    net = np.random.default_rng(500 + k)
    w1, w2 = net.normal(size=(d, 64)), net.normal(size=(64, 5))
    center = net.normal(scale=0.5, size=d) if k else np.zeros(d)
    rng = np.random.default_rng(seed)
    x = center + rng.normal(size=(n, d))
    return x, np.argmax(np.tanh((x - center) @ w1 / np.sqrt(d)) @ w2, axis=1)


class Feed:
    """Archives rows with labels, one second apart in event time."""

    def __init__(self, store: LifecycleStore, pipeline: str, d: int) -> None:
        self.features = [f"f{i}" for i in range(d)]
        store.ensure_pipeline(pipeline, self.features, {})
        self.archive = store.archive(pipeline)
        self.pipeline, self.clock, self.offset = pipeline, T0, 0

    def rows(self, x: np.ndarray, y: np.ndarray) -> tuple[datetime, datetime]:
        n = len(x)
        times = pa.array(
            [self.clock + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")
        )
        ids = [f"e{self.offset + i}" for i in range(n)]
        cols: dict[str, Any] = {"event_id": ids, "timestamp": times}
        cols.update({f: x[:, j] for j, f in enumerate(self.features)})
        cols.update(topic=[f"{self.pipeline}.inputs"] * n, partition=[0] * n)
        cols["offset"] = np.arange(self.offset, self.offset + n)
        self.archive.append_rows(pa.table(cols))
        self.archive.append_labels(
            pa.table({"event_id": ids, "label": y.astype(np.int64), "timestamp": times})
        )
        start, end = self.clock, self.clock + timedelta(seconds=n - 1)
        self.clock, self.offset = end + timedelta(seconds=1), self.offset + n
        return start, end


def alarm(
    pipeline: str, ref: str | None, start: datetime, end: datetime, stat: float
) -> DriftEvent:
    return DriftEvent(
        drift_id=f"{pipeline}-{ref}-{start.timestamp():.0f}",
        pipeline=pipeline,
        detector="mmd",
        statistic=stat,
        threshold=1.0,
        window_start=start,
        window_end=end,
        rows_seen=1000,
        reference_data_version=ref,
    )


# ---------------------------------------------------------------------------- 1. warm start
def warm_start_run(dataset: Any, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = LifecycleStore.open(f"sqlite:///{tmp}/s.db", artifacts=f"{tmp}/a")
        feed = Feed(store, "rec", dataset.d)
        cfg = PipelineConfig(
            name="rec",
            feature_names=feed.features,
            bootstrap_rows=100,
            selection={"min_labelled_rows": 100},
            model={"seed": seed},
        )
        r = Retrainer(store, cfg, InMemoryPublisher())
        feed.rows(*dataset.segment("A", 0))
        [a] = r.tick(feed.clock)
        b = r.handle_drift(alarm("rec", a.data_version_id, *feed.rows(*dataset.segment("B", 1)), 5))
        back = r.handle_drift(
            alarm("rec", b.data_version_id, *feed.rows(*dataset.segment("A", 2)), 5)
        )
        assert back.parent is not None
        # Race the three starts on the return's own training data and validation split.
        table = store.read_data_version(back.data_version_id)
        x = feature_matrix(table, feed.features)
        y = table.column("label").to_numpy()
        split = np.random.default_rng(seed).permutation(len(y))
        n_val = len(y) // 4
        val, fit = split[:n_val], split[n_val:]
        classes = sorted(set(y.tolist()))
        models = {
            "chosen lifecycle": back.parent.model_version_id,
            "latest model (B)": b.model_version_id,
            "scratch": None,
        }
        # The accuracy a from-scratch training ends with (early stopping, best epoch kept).
        _, scratch = _fit(x, y, fit, val, classes, None, Budget(max_epochs=200, patience=10))
        # Within one validation example of it: small validation sets make exact ties brittle.
        target = scratch.evaluate(x[val], y[val])["accuracy"] - 1.0 / len(val)
        out: dict[str, Any] = {
            "target": target,
            "chosen_is_A": back.parent.model_version_id == a.model_version_id,
            "similarity": back.parent.similarity,
        }
        for label, mv in models.items():
            parent = (
                None if mv is None else load_adapter("torch-mlp", store.load_model_artifact(mv))
            )
            report, _ = _fit(
                x,
                y,
                fit,
                val,
                classes,
                parent,
                Budget(max_epochs=MAX_EPOCHS, patience=None, target=target),
            )
            reached = report.stopped == "target"
            out[label] = (report.epochs if reached else None, report.seconds, report.start_metric)
        store.close()
        return out


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    fit: np.ndarray,
    val: np.ndarray,
    classes: list[int],
    parent: Any,
    budget: Budget,
) -> Any:
    params = {"seed": 0} if parent is None else parent.params
    m = make_adapter("torch-mlp")
    m.build(params, x.shape[1], classes)
    report = m.fit(x[fit], y[fit], warm_start=parent, budget=budget, validation=(x[val], y[val]))
    return report, m


def bench_warm_start(seeds: int, quick: bool) -> None:
    n_digits = max(seeds, 5)  # digits runs are cheap: more seeds
    print("\n### 1. Warm start on a recurring concept (A -> B -> A), return to A\n")
    print(
        f"{n_digits} seeds (digits), {seeds} (teacher). Target = the validation accuracy a "
        "from-scratch fit ends with (early stopping, patience 10), less one validation "
        f"example. Epochs until each start first reaches it ({MAX_EPOCHS} max; 0 = already "
        "there before training; a run that never reaches it counts as the max in the median). "
        "Per-seed epochs in brackets.\n"
    )
    print(
        "| dataset | start | median epochs to target (per seed) | reached | median seconds | "
        "accuracy before training | epochs vs scratch |"
    )
    print("|---|---|---|---|---|---|---|")
    datasets = [Digits] + ([] if quick else [Teacher])
    for make in datasets:
        n = seeds if make is Teacher else n_digits
        runs = [warm_start_run(make(seed), seed) for seed in range(n)]
        capped = {
            label: [MAX_EPOCHS if r[label][0] is None else r[label][0] for r in runs]
            for label in ("chosen lifecycle", "latest model (B)", "scratch")
        }
        scratch_epochs = statistics.median(capped["scratch"])
        for label, eps in capped.items():
            ep = statistics.median(eps)
            per_seed = ", ".join("-" if r[label][0] is None else str(r[label][0]) for r in runs)
            reached = sum(r[label][0] is not None for r in runs)
            secs = statistics.median(r[label][1] for r in runs)
            start = statistics.median(r[label][2] or 0.0 for r in runs)
            print(
                f"| {make.name} | {label} | {ep:g} ({per_seed}) | {reached}/{n} | {secs:.2f} | "
                f"{start:.3f} | {ep / scratch_epochs:.2f} |"
            )
        picked = sum(r["chosen_is_A"] for r in runs)
        sims = statistics.median(r["similarity"] for r in runs)
        targets = statistics.median(r["target"] for r in runs)
        print(
            f"| {make.name} | chosen = A's own model in {picked}/{n} runs (similarity "
            f"{sims:.3f}); median target accuracy {targets:.3f} | | | | | |"
        )


# ---------------------------------------------------------------------------- 2. latency
def latency_run(rows: int, warm: str, tmp: str, seed: int) -> dict[str, Any]:
    store = LifecycleStore.open(
        f"sqlite:///{tmp}/{warm}-{seed}.db", artifacts=f"{tmp}/a-{warm}-{seed}"
    )
    feed = Feed(store, "lat", 32)
    cfg = PipelineConfig(
        name="lat",
        feature_names=feed.features,
        bootstrap_rows=1000,
        model={"warm_start": warm, "seed": seed},
    )
    pub = InMemoryPublisher()
    r = Retrainer(store, cfg, pub)
    feed.rows(*teacher("A", rows, seed))
    r.tick(feed.clock)
    out = {}
    for name, concept in (("to B", "B"), ("back to A", "A")):
        s, e = feed.rows(*teacher(concept, rows, seed + len(out) + 1))
        ref = store.current("lat").data_version_id
        t = time.perf_counter()
        outcome = r.handle_drift(alarm("lat", ref, s, e, 5))
        published = pub.model_versions[-1].model_version_id == outcome.model_version_id
        out[name] = (time.perf_counter() - t, outcome, published)
    store.close()
    return out


def bench_latency(rows: int, seeds: int) -> None:
    print(f"\n### 2. Drift event -> published model version, MLP (64, 64) on {rows} new rows\n")
    print(
        "`handle_drift` wall time until the publisher has the event (select, snapshot, guard, "
        "transfer, fit with patience 3 on 72% of rows, gate, register, deploy, publish), in a "
        "process that has trained before (the bootstrap pays the one-off ~3 s import of "
        f"torch's optimizer machinery). Medians over {seeds} seeds; 1 torch thread; synthetic "
        "teacher, d=32.\n"
    )
    print(
        "| drift | start | total s | fit s | epochs | select+snapshot s | other s | "
        "challenger acc | champion acc | deployed and published |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            w: [latency_run(rows, w, tmp, s) for s in range(seeds)] for w in ("similar", "none")
        }
    for drift in ("to B", "back to A"):
        for warm, label in (("similar", "similar lifecycle"), ("none", "scratch")):
            runs = [r[drift] for r in results[warm]]
            tot = statistics.median(x[0] for x in runs)
            fit = statistics.median(x[1].timings.get("fit_s", 0) for x in runs)
            sels = [
                x[1].timings.get("select_s", 0) + x[1].timings.get("snapshot_s", 0) for x in runs
            ]
            sel = statistics.median(sels)
            other = statistics.median(
                x[0] - x[1].timings.get("fit_s", 0) - s for x, s in zip(runs, sels, strict=True)
            )
            epochs = statistics.median(x[1].metrics["fit"]["epochs"] for x in runs)
            acc = statistics.median(x[1].metrics["challenger"]["accuracy"] for x in runs)
            champ = statistics.median(x[1].metrics["champion"]["accuracy"] for x in runs)
            pub = sum(x[2] for x in runs)
            print(
                f"| {drift} | {label} | {tot:.2f} | {fit:.2f} | {epochs:g} | {sel:.2f} | "
                f"{other:.2f} | {acc:.3f} | {champ:.3f} | {pub}/{len(runs)} |"
            )


# ---------------------------------------------------------------------------- 3. guard
def bench_guard(steps: int, seed: int, rows: int = 3000) -> None:
    print(f"\n### 3. Wasted-computation guard on a replay of {steps} drift alarms\n")
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = LifecycleStore.open(f"sqlite:///{tmp}/g.db", artifacts=f"{tmp}/a")
        feed = Feed(store, "guard", 32)
        cfg = PipelineConfig(
            name="guard",
            feature_names=feed.features,
            bootstrap_rows=500,
            guard={"mode": "shadow"},
            gate={"margin": 0.03},
            model={"seed": seed},
        )
        r = Retrainer(store, cfg, InMemoryPublisher())
        current = "A"
        feed.rows(*teacher(current, rows, seed))
        r.tick(feed.clock)
        records = []
        t0 = time.perf_counter()
        for i in range(steps):
            real = rng.random() < 0.5
            if real:
                current = str(rng.choice([c for c in "ABC" if c != current]))
            stat = float(rng.uniform(2.0, 6.0) if real else rng.uniform(1.0, 1.6))
            s, e = feed.rows(*teacher(current, rows, seed * 1000 + i))
            # A fresh reference per alarm, as after a monitor restart: every alarm is its own
            # episode, so every one reaches the guard.
            out = r.handle_drift(alarm("guard", f"ref-{i}", s, e, stat))
            g = out.metrics.get("guard", {})
            records.append(
                (
                    real,
                    g.get("p_deploy"),
                    g.get("evidence", 0.0),
                    g.get("n_history", 0),
                    out.deployed,
                    out.timings.get("fit_s", 0.0),
                )
            )
        wall = time.perf_counter() - t0
        store.close()
    judged = [x for x in records if x[3] >= cfg.guard.min_history and x[1] is not None]
    wasted = [x for x in judged if not x[4]]
    print(
        f"Shadow mode: every alarm trains ({rows} labelled rows each, gate margin 0.03) and the "
        "guard's estimate is scored against the gate's decision. Alarms: half real changes "
        "among concepts A/B/C (statistic 2-6x threshold), half false (same concept, 1-1.6x). "
        f"Judged: the {len(judged)} alarms after the first {cfg.guard.min_history} outcomes. "
        f"A threshold row applies the guard's rule (skip when P(deploy) < threshold with >= "
        f"2 nearby past runs) to the recorded estimates. Replay took {wall:.0f}s.\n"
    )
    print(
        "| policy | trainings run | wasted (not deployed) run | wasted skipped | deploys lost "
        "| verdict right | fit seconds saved |"
    )
    print("|---|---|---|---|---|---|---|")
    total_fit = sum(x[5] for x in judged)
    print(
        f"| no guard (baseline) | {len(judged)} | {len(wasted)} | 0/{len(wasted)} | 0 | "
        f"{len(judged) - len(wasted)}/{len(judged)} | 0 of {total_fit:.1f} |"
    )
    for threshold in (0.2, 0.3, 0.4, 0.5):
        skip = [x[1] < threshold and x[2] >= 2.0 for x in judged]
        saved = sum(sk and not x[4] for sk, x in zip(skip, judged, strict=True))
        lost = sum(sk and x[4] for sk, x in zip(skip, judged, strict=True))
        right = sum(sk != x[4] for sk, x in zip(skip, judged, strict=True))
        fit_saved = sum(x[5] for sk, x in zip(skip, judged, strict=True) if sk)
        default = " (default)" if threshold == cfg.guard.threshold else ""
        print(
            f"| guard, threshold {threshold}{default} | {len(judged) - sum(skip)} | "
            f"{len(wasted) - saved} | {saved}/{len(wasted)} | {lost} | {right}/{len(judged)} | "
            f"{fit_saved:.1f} of {total_fit:.1f} |"
        )
    false_alarms = [x for x in judged if not x[0]]
    print(
        f"\nFalse alarms deployed anyway (challenger beat the champion by > margin on the "
        f"holdout): {sum(x[4] for x in false_alarms)}/{len(false_alarms)}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--only", choices=["warm", "latency", "guard"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = 1 if args.quick else args.seeds
    print("## Retrainer benchmarks")
    if args.only in (None, "warm"):
        bench_warm_start(seeds, args.quick)
    if args.only in (None, "latency"):
        bench_latency(5_000 if args.quick else args.rows, seeds)
    if args.only in (None, "guard"):
        bench_guard(12 if args.quick else args.steps, seed=0)


if __name__ == "__main__":
    main()
