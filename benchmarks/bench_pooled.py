"""Pipeline-level pooling: delay in total rows and alarms per change at P = 1, 4 and 12.

Every partition gets the same share of one stream (batches of 50 rows in turn); the change
(+0.5 sd in one of 4 features) hits all partitions at total row 6,000. "pooled": each
partition's worker computes ``partial_state`` and one ``PooledDetector`` merges them;
"per partition": one detector per partition at the same ert (the old layout), first alarm
of any partition; both hold back re-alarms for ert rows (of the pipeline; of the partition),
as the monitor step does, so "alarms per change" counts DriftEvents. Also: false alarms per
pipeline ert on no-drift data.

Run:  python benchmarks/bench_pooled.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from driftline.detectors import DriftDetector, OnlineMMD, PooledDetector

BATCH, CHANGE, AFTER, ERT = 50, 6_000, 20_000, 20_000


def polls(p: int, n: int) -> list[tuple[int, int, int]]:
    return [((i // BATCH) % p, i, min(i + BATCH, n)) for i in range(0, n, BATCH)]


def stream(rng: np.random.Generator, shift: float) -> np.ndarray:
    after = rng.normal(size=(AFTER, 4)) + np.array([shift, 0.0, 0.0, 0.0])
    return np.concatenate([rng.normal(size=(CHANGE, 4)), after])


def pooled(template: bytes, p: int, x: np.ndarray) -> tuple[int | None, int]:
    workers = [DriftDetector.from_bytes(template) for _ in range(p)]
    pool = PooledDetector(DriftDetector.from_bytes(template))
    first = None
    for part, a, b in polls(p, len(x)):
        res = pool.merge(part, workers[part].partial_state(x[a:b]))
        if res.drift and first is None and a + (res.index or 0) >= CHANGE:
            first = a + (res.index or 0) - CHANGE
    return first, pool.alarms


def separate(template: bytes, p: int, x: np.ndarray, holdoff: int = ERT) -> tuple[int | None, int]:
    """One detector per partition, each holding back re-alarms for ``holdoff`` of its rows."""
    dets = [DriftDetector.from_bytes(template) for _ in range(p)]
    quiet_until = [0] * p
    first, alarms = None, 0
    for part, a, b in polls(p, len(x)):
        res = dets[part].update(x[a:b])
        if res.drift:
            dets[part].reset()
            if a < quiet_until[part]:
                continue
            alarms += 1
            quiet_until[part] = a + holdoff * p
            if first is None and a + (res.index or 0) >= CHANGE:
                first = a + (res.index or 0) - CHANGE
    return first, alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    ref = np.random.default_rng(0).normal(size=(5000, 4))
    template = OnlineMMD(ert=ERT, window=200).fit(ref).to_bytes()
    print("\n| P | layout | median delay (total rows) | alarms per change (median) | missed |")
    print("|---|---|---|---|---|")
    for p in (1, 4, 12):
        for name, fn in (("pooled", pooled), ("per partition", separate)):
            got = [fn(template, p, stream(np.random.default_rng(r), 0.5)) for r in range(args.reps)]
            delays = [d for d, _ in got if d is not None]
            med = f"{statistics.median(delays):,.0f}" if delays else "—"
            alarms = statistics.median(a for _, a in got)
            missed = sum(d is None for d, _ in got)
            print(f"| {p} | {name} | {med} | {alarms:g} | {missed}/{args.reps} |")
    print("\n| P | layout | no-drift rows | false alarms | observed / requested pipeline ert |")
    print("|---|---|---|---|---|")
    quiet = np.random.default_rng(99).normal(size=(400_000, 4))
    for p in (1, 4, 12):
        for name in ("pooled", "per partition"):
            if name == "pooled":
                # Holdoff 1 row: count every false alarm of the pooled chart.
                workers = [DriftDetector.from_bytes(template) for _ in range(p)]
                pool = PooledDetector(DriftDetector.from_bytes(template), holdoff=1)
                for part, a, b in polls(p, len(quiet)):
                    pool.merge(part, workers[part].partial_state(quiet[a:b]))
                alarms = pool.alarms
            else:
                _, alarms = separate(template, p, quiet, holdoff=1)
            ratio = len(quiet) / max(alarms, 1) / ERT
            print(f"| {p} | {name} | {len(quiet):,} | {alarms} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
