"""Benchmark the detectors against their baselines, side by side in one run.

Prints markdown tables:
1. update throughput at d=32 in batches of 1000: OnlineMMD / FeatureDrift / OutputDrift vs
   River ADWIN per feature and an exact sliding-window MMD;
2. false alarms on no-drift streams (Gaussian, and scikit-learn digits resampled) at the
   requested ert: observed events per false alarm / requested, with ADWIN per feature alongside;
3. detection delay (events after the change) for a mean shift in 2 of 16 features, a
   correlation-only change and noise added to digits, at ert 1000 and 10000;
4. core-set similarity vs exact full-data MMD at d=64: speed-up and top-1 agreement when
   ranking 20 candidate datasets;
5. memory after many events (detector state and core set stay flat).

Run:  python benchmarks/bench_detectors.py            (default, about 5 minutes)
      python benchmarks/bench_detectors.py --quick    (smoke run, under a minute)
      python benchmarks/bench_detectors.py --full     (exact MMD at n=100k, 10M-event core set)
"""

from __future__ import annotations

# No thread pinning here: the detectors limit numpy's BLAS to one thread themselves, so
# these numbers are what a user's default environment gets.
import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from river.drift import ADWIN
from sklearn.datasets import load_digits

from driftline.detectors import (
    Coreset,
    DriftDetector,
    FeatureDrift,
    OnlineMMD,
    OutputDrift,
    exact_mmd2,
    mmd2,
)

Gen = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Scale:
    """How big each experiment is."""

    throughput_events: int
    alarm_events: int
    feature_alarm_events: int
    adwin_alarm_events: int
    delay_reps: int
    agreement_trials: int
    agreement_n: int
    speed_n: int
    memory_events: int
    coreset_memory_events: int


SCALES = {
    "quick": Scale(20_000, 100_000, 100_000, 10_000, 2, 3, 1_000, 5_000, 1_000_000, 100_000),
    "default": Scale(
        200_000, 1_000_000, 300_000, 50_000, 5, 20, 2_000, 10_000, 10_000_000, 1_000_000
    ),
    "full": Scale(
        1_000_000, 1_000_000, 1_000_000, 100_000, 9, 20, 5_000, 100_000, 10_000_000, 10_000_000
    ),
}


# ---------------------------------------------------------------------- data
def digits() -> np.ndarray:
    return np.asarray(load_digits().data, dtype=np.float64)


def gauss(d: int) -> Gen:
    return lambda rng, n: rng.normal(size=(n, d))


def resample(pool: np.ndarray) -> Gen:
    return lambda rng, n: pool[rng.integers(0, len(pool), n)]


def mean_shift(d: int, k: int, delta: float) -> Gen:
    offset = np.r_[np.full(k, delta), np.zeros(d - k)]
    return lambda rng, n: rng.normal(size=(n, d)) + offset


def correlation_only(d: int, rho: float) -> Gen:
    cov = np.eye(d)
    for i in range(0, d - 1, 2):
        cov[i, i + 1] = cov[i + 1, i] = rho
    chol = np.linalg.cholesky(cov)
    return lambda rng, n: rng.normal(size=(n, d)) @ chol.T


def noisy(pool: np.ndarray, sd: float) -> Gen:
    return lambda rng, n: pool[rng.integers(0, len(pool), n)] + rng.normal(0, sd, (n, 64))


# ---------------------------------------------------------------------- baselines
class AdwinPerFeature:
    """River ADWIN on every feature; an alarm when any feature's ADWIN fires."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.reset()

    def reset(self) -> None:
        self.adwins = [ADWIN() for _ in range(self.d)]

    def update(self, batch: np.ndarray) -> int | None:
        for i, row in enumerate(batch.tolist()):
            fired = False
            for adwin, value in zip(self.adwins, row, strict=True):
                adwin.update(value)
                fired = fired or adwin.drift_detected
            if fired:
                return i
        return None


class SlidingWindowMMD:
    """Exact MMD^2 between the last ``window`` events and a reference sample, updated per event.

    Per-event cost O((window + n_ref) * d): the kernel sums are kept incrementally.
    """

    def __init__(self, reference: np.ndarray, window: int, bandwidth: float) -> None:
        self.ref, self.window, self.gamma = reference, window, 1.0 / (2 * bandwidth**2)
        self.buf: list[np.ndarray] = []
        self.kr: list[float] = []
        self.s_ww, self.s_wr = 0.0, 0.0
        d2 = ((reference[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
        self.s_rr = float(np.exp(-self.gamma * d2).mean())

    def _k(self, x: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(-self.gamma * ((ys - x) ** 2).sum(axis=1)))

    def update(self, batch: np.ndarray) -> float:
        stat = 0.0
        for x in batch:
            if len(self.buf) == self.window:
                old = self.buf.pop(0)
                self.s_wr -= self.kr.pop(0)
                if self.buf:
                    self.s_ww -= 2 * float(self._k(old, np.asarray(self.buf)).sum())
                self.s_ww -= 1.0
            if self.buf:
                self.s_ww += 2 * float(self._k(x, np.asarray(self.buf)).sum())
            self.s_ww += 1.0
            kr = float(self._k(x, self.ref).sum())
            self.buf.append(x)
            self.kr.append(kr)
            self.s_wr += kr
            w = len(self.buf)
            stat = self.s_rr + self.s_ww / w**2 - 2 * self.s_wr / (w * len(self.ref))
        return stat


# ---------------------------------------------------------------------- helpers
def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def events_per_second(
    update: Callable[[np.ndarray], object], data: np.ndarray, batch: int
) -> float:
    """Events per second of this process's CPU time.

    On a shared machine wall time measures the neighbours' load; CPU time measures the code
    (the detectors run numpy's BLAS on one thread, so this is per core).
    """
    start = time.process_time()
    for i in range(0, len(data), batch):
        update(data[i : i + batch])
    return len(data) / (time.process_time() - start)


def false_alarms(det: DriftDetector | AdwinPerFeature, stream: np.ndarray) -> int:
    """Alarms on a no-drift stream, resetting after each as the streaming layer does."""
    alarms, i = 0, 0
    while i < len(stream):
        batch = stream[i : i + 1000]
        if isinstance(det, AdwinPerFeature):
            idx = det.update(batch)
        else:
            res = det.update(batch)
            idx = res.index if res.drift else None
        if idx is None:
            i += len(batch)
        else:
            alarms += 1
            i += idx + 1
            det.reset()
    return alarms


def delay(
    det: DriftDetector | AdwinPerFeature,
    before: np.ndarray,
    after: np.ndarray,
) -> int | None:
    """Events after the change until the alarm (None if never).

    False alarms before the change reset the detector and monitoring goes on, as in
    production, so the change meets a detector in its usual running state.
    """
    det.reset()
    stream = np.concatenate([before, after])
    i = 0
    while i < len(stream):
        batch = stream[i : i + 1000]
        if isinstance(det, AdwinPerFeature):
            idx = det.update(batch)
        else:
            res = det.update(batch)
            idx = res.index if res.drift else None
        if idx is None:
            i += len(batch)
        elif i + idx < len(before):
            i += idx + 1
            det.reset()
        else:
            return i + idx - len(before) + 1
    return None


def fmt(x: float | None, digits_: int = 0) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits_}f}"


# ---------------------------------------------------------------------- experiments
def bench_throughput(scale: Scale) -> None:
    d, n = 32, scale.throughput_events
    rng = np.random.default_rng(0)
    ref, data = rng.normal(size=(5000, d)), rng.normal(size=(n, d))
    probs_ref = rng.dirichlet(np.ones(10), size=5000)
    probs = rng.dirichlet(np.ones(10), size=n)
    rows = []
    candidates: list[tuple[str, Callable[[np.ndarray], object], np.ndarray]] = []
    mmd = OnlineMMD(ert=10_000).fit(ref)
    feat = FeatureDrift(ert=10_000).fit(ref)
    out = OutputDrift(ert=10_000).fit(probs_ref)
    candidates += [("OnlineMMD (64 RFF)", mmd.update, data)]
    candidates += [("FeatureDrift (order 3)", feat.update, data)]
    candidates += [("OutputDrift (10 classes)", out.update, probs)]
    adwin = AdwinPerFeature(d)
    candidates += [("River ADWIN x 32 features", adwin.update, data[: max(n // 20, 2000)])]
    exact = SlidingWindowMMD(ref[:1000], window=500, bandwidth=8.0)
    candidates += [("exact sliding-window MMD (w=500, 1000 ref)", exact.update, data[:3000])]
    results = {}
    for name, fn, x in candidates:
        runs = [events_per_second(fn, x, 1000) for _ in range(3)]
        results[name] = statistics.median(runs)
    base = results["River ADWIN x 32 features"]
    for name, eps in results.items():
        rows.append([name, fmt(eps), f"{eps / base:.2g}x"])
    table(
        f"Update throughput, d=32, batches of 1000 (median of 3; {n:,} events)",
        ["detector", "events per CPU-second (1 core)", "vs ADWIN per feature"],
        rows,
    )


def bench_false_alarms(scale: Scale) -> None:
    rng = np.random.default_rng(1)
    pool = digits()
    streams = {"Gaussian d=16": gauss(16), "digits resampled d=64": resample(pool)}
    rows = []
    for ert in (1000, 10_000):
        for sname, gen in streams.items():
            ref = gen(rng, 5000)
            stream = gen(rng, scale.alarm_events)
            for dname, det, n_events in (
                ("OnlineMMD", OnlineMMD(ert=ert).fit(ref), scale.alarm_events),
                ("FeatureDrift", FeatureDrift(ert=ert).fit(ref), scale.feature_alarm_events),
            ):
                alarms = false_alarms(det, stream[:n_events])
                observed = n_events / alarms if alarms else None
                ratio = f"{observed / ert:.2f}" if observed else f"> {n_events / ert:.0f}"
                rows.append(
                    [sname, dname, fmt(ert), fmt(n_events), str(alarms), fmt(observed), ratio]
                )
    for sname, gen in streams.items():
        d = 16 if sname.startswith("Gaussian") else 64
        stream = gen(rng, scale.adwin_alarm_events)
        alarms = false_alarms(AdwinPerFeature(d), stream)
        per100k = alarms * 100_000 / len(stream)
        rows.append(
            [
                sname,
                "River ADWIN per feature (delta=0.002)",
                "not settable",
                fmt(len(stream)),
                str(alarms),
                fmt(len(stream) / alarms if alarms else None),
                f"{per100k:.0f} alarms / 100k",
            ]
        )
    table(
        "False alarms on no-drift streams (reset after each alarm)",
        [
            "stream",
            "detector",
            "requested ert",
            "events",
            "alarms",
            "observed ert",
            "observed / requested",
        ],
        rows,
    )


def bench_delay(scale: Scale) -> None:
    pool = digits()
    scenarios: list[tuple[str, int, Gen, Gen]] = [
        ("mean +0.5 sd in 2 of 16 features", 16, gauss(16), mean_shift(16, 2, 0.5)),
        (
            "correlation 0 -> 0.5 in 8 pairs (marginals unchanged)",
            16,
            gauss(16),
            correlation_only(16, 0.5),
        ),
        ("digits + N(0, 1) pixel noise", 64, resample(pool), noisy(pool, 1.0)),
    ]
    rows = []
    for sname, d, before_gen, after_gen in scenarios:
        ref = before_gen(np.random.default_rng(10), 5000)
        for ert in (1000, 10_000):
            dets: list[tuple[str, DriftDetector | AdwinPerFeature]] = [
                ("OnlineMMD", OnlineMMD(ert=ert).fit(ref)),
                ("FeatureDrift", FeatureDrift(ert=ert).fit(ref)),
            ]
            if ert == 1000:
                dets.append(("ADWIN per feature", AdwinPerFeature(d)))
            for dname, det in dets:
                delays, missed = [], 0
                for rep in range(scale.delay_reps):
                    rng = np.random.default_rng(100 + rep)
                    after_n = 20_000 if isinstance(det, AdwinPerFeature) else 50_000
                    got = delay(det, before_gen(rng, 1000), after_gen(rng, after_n))
                    if got is None:
                        missed += 1
                    else:
                        delays.append(got)
                med = statistics.median(delays) if delays else None
                ert_s = fmt(ert) if not isinstance(det, AdwinPerFeature) else "n/a"
                rows.append([sname, dname, ert_s, fmt(med), f"{missed}/{scale.delay_reps}"])
    table(
        "Detection delay (events after the change; median over runs, change after 1000 "
        "in-control events)",
        ["change", "detector", "ert", "median delay", "missed (no alarm in 50k; ADWIN 20k)"],
        rows,
    )


def _mixture(
    pool: np.ndarray, labels: np.ndarray, props: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    cls = rng.choice(10, size=n, p=props)
    out = np.empty((n, pool.shape[1]))
    for c in range(10):
        sel = cls == c
        out[sel] = pool[rng.choice(np.flatnonzero(labels == c), int(sel.sum()))]
    return out + rng.normal(0, 0.5, out.shape)


def bench_similarity(scale: Scale) -> None:
    data = load_digits()
    pool, labels = np.asarray(data.data, dtype=np.float64), data.target
    # Speed: one pair at speed_n rows, d=64.
    rng = np.random.default_rng(7)
    n = scale.speed_n
    x = _mixture(pool, labels, np.full(10, 0.1), n, rng)
    y = _mixture(pool, labels, rng.dirichlet(np.ones(10)), n, rng)
    start = time.process_time()
    exact_mmd2(x, y)
    t_exact = time.process_time() - start
    start = time.process_time()
    cx, cy = Coreset.from_array(x), Coreset.from_array(y)
    t_build = (time.process_time() - start) / 2
    t_sim = statistics.median([_timed(lambda: mmd2(cx, cy)) for _ in range(5)])
    rows = [
        [f"{n:,}", "exact MMD^2 (full data, blocked float32)", f"{t_exact:.2f} s", "1x"],
        [
            f"{n:,}",
            "core-set MMD^2 (k=256), sketches stored",
            f"{t_sim * 1000:.1f} ms",
            f"{t_exact / t_sim:,.0f}x",
        ],
        [
            f"{n:,}",
            "core-set MMD^2 incl. building the new sketch",
            f"{t_build + t_sim:.2f} s",
            f"{t_exact / (t_build + t_sim):,.1f}x",
        ],
    ]
    if n < 100_000:
        scaled = t_exact * (100_000 / n) ** 2
        rows.append(
            [
                "100,000 (extrapolated n^2)",
                "exact MMD^2",
                f"{scaled:.0f} s",
                f"{scaled / t_sim:,.0f}x vs stored sketches",
            ]
        )
    table(
        "Core-set similarity vs exact MMD, d=64 (digits mixtures; CPU time)",
        ["n per dataset", "method", "time per comparison", "speed-up"],
        rows,
    )

    # Agreement: query vs 20 candidate datasets; does the core-set pick the exact top-1?
    agree, spearman = 0, []
    for t in range(scale.agreement_trials):
        rng = np.random.default_rng(1000 + t)
        props = [rng.dirichlet(np.ones(10)) for _ in range(20)]
        target = int(rng.integers(20))
        qprops = 0.8 * props[target] + 0.2 * rng.dirichlet(np.ones(10))
        q = _mixture(pool, labels, qprops, scale.agreement_n, rng)
        cands = [_mixture(pool, labels, p, scale.agreement_n, rng) for p in props]
        exact = np.array([exact_mmd2(q, c) for c in cands])
        cq = Coreset.from_array(q)
        approx = np.array([mmd2(cq, Coreset.from_array(c)) for c in cands])
        agree += int(np.argmin(exact) == np.argmin(approx))
        ranks = np.argsort(np.argsort(exact)), np.argsort(np.argsort(approx))
        spearman.append(float(np.corrcoef(*ranks)[0, 1]))
    table(
        f"Top-1 agreement ranking 20 candidates ({scale.agreement_trials} trials, "
        f"n={scale.agreement_n:,} per dataset, d=64)",
        ["top-1 agreement", "median Spearman rank correlation"],
        [
            [
                f"{agree}/{scale.agreement_trials} = {agree / scale.agreement_trials:.0%}",
                f"{statistics.median(spearman):.3f}",
            ]
        ],
    )


def _timed(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench_memory(scale: Scale) -> None:
    rng = np.random.default_rng(3)
    batch = rng.normal(size=(1000, 32))
    det = OnlineMMD(ert=10_000).fit(rng.normal(size=(5000, 32)))
    cs = Coreset(k=256)
    rows = []
    tracemalloc.start()
    checkpoints = {scale.memory_events // 10, scale.memory_events // 2, scale.memory_events}
    for i in range(1, scale.memory_events // 1000 + 1):
        det.update(batch + 0.001 * i)
        if i * 1000 in checkpoints:
            cur, peak = tracemalloc.get_traced_memory()
            rows.append(
                [
                    "OnlineMMD",
                    fmt(i * 1000),
                    fmt(len(det.to_bytes())),
                    f"{cur / 1e6:.2f} MB / {peak / 1e6:.2f} MB",
                ]
            )
    tracemalloc.reset_peak()
    checkpoints = {scale.coreset_memory_events // 10, scale.coreset_memory_events}
    for i in range(1, scale.coreset_memory_events // 1000 + 1):
        cs.update(rng.normal(size=(1000, 32)))
        if i * 1000 in checkpoints:
            cur, peak = tracemalloc.get_traced_memory()
            rows.append(
                [
                    f"Coreset k=256 ({cs.points.shape[0]} points)",
                    fmt(i * 1000),
                    fmt(len(cs.to_bytes())),
                    f"{cur / 1e6:.2f} MB / {peak / 1e6:.2f} MB",
                ]
            )
    tracemalloc.stop()
    table(
        "Memory after many events, d=32 (Python heap traced by tracemalloc)",
        ["object", "events", "state bytes (to_bytes)", "heap now / peak"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smoke run (< 1 minute)")
    group.add_argument("--full", action="store_true", help="the largest sizes (~30 minutes)")
    parser.add_argument(
        "--only",
        choices=["throughput", "alarms", "delay", "similarity", "memory"],
        action="append",
        help="run only these parts",
    )
    args = parser.parse_args()
    scale = SCALES["quick" if args.quick else "full" if args.full else "default"]
    parts = {
        "throughput": bench_throughput,
        "alarms": bench_false_alarms,
        "delay": bench_delay,
        "similarity": bench_similarity,
        "memory": bench_memory,
    }
    for name, fn in parts.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        fn(scale)
        print(f"\n_{name}: {time.perf_counter() - start:.0f} s_")


if __name__ == "__main__":
    main()
