"""Side by side with the peers, in one run: delay per kind of change at equal ert, false alarms
per ert, and the label-free accuracy estimate against NannyML's CBPE.

1. Delay (events after the change, median over repetitions; false alarms before the change
   reset the detector and monitoring goes on) for five kinds of change, at ert=1000:
   OnlineMMD and FeatureDrift (two scales, and one scale) against alibi-detect's
   MMDDriftOnline and CVMDriftOnline (same ert) and River's ADWIN per feature (it has no ert:
   its false alarms are shown next to it).
2. False alarms per ert on Gaussian and on scikit-learn digits.
3. Accuracy-estimate error per chunk on data with miscalibrated probabilities: OutputDrift
   calibrated on the labelled reference vs NannyML CBPE.

alibi-detect 0.13 and NannyML need numpy<2 / their own pins: each runs in its own venv, fed
the same arrays through a file::

    python3 -m venv /tmp/alibi-venv && /tmp/alibi-venv/bin/pip install "alibi-detect[torch]==0.13.*"
    python3 -m venv /tmp/nanny-venv && /tmp/nanny-venv/bin/pip install nannyml
    python benchmarks/bench_detectors_peers.py [--reps 3] [--alibi /tmp/alibi-venv/bin/python]
        [--nannyml /tmp/nanny-venv/bin/python]

A peer whose interpreter is missing is left out of the tables (and says so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from river.drift import ADWIN
from sklearn.datasets import load_digits

from driftline.detectors import DriftDetector, FeatureDrift, OnlineMMD, OutputDrift

ERT = 1000
CHANGE = 1000
AFTER = 4000
BATCH = 100
HERE = Path(__file__).resolve().parent

Gen = Callable[[np.random.Generator, int], np.ndarray]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return np.asarray(data.data, dtype=np.float64), data.target


def scenarios() -> dict[str, tuple[Gen, Gen]]:
    """name -> (no-drift generator, after-change generator)."""
    pool, labels = _digits()
    d = 8
    gauss: Gen = lambda rng, n: rng.normal(size=(n, d))  # noqa: E731
    mean = np.r_[0.5, 0.5, np.zeros(d - 2)]
    scale = np.r_[0.5, 0.5, np.ones(d - 2)]
    cov = np.eye(d)
    for i in range(0, d, 2):
        cov[i, i + 1] = cov[i + 1, i] = 0.5
    chol = np.linalg.cholesky(cov)
    few = np.flatnonzero(labels < 3)
    digits_gen: Gen = lambda rng, n: pool[rng.integers(0, len(pool), n)]  # noqa: E731
    return {
        "small mean shift (+0.5 sd in 2 of 8)": (gauss, lambda r, n: gauss(r, n) + mean),
        "variance drop (sd 1 -> 0.5 in 2 of 8)": (gauss, lambda r, n: gauss(r, n) * scale),
        "correlation only (0 -> 0.5 in 4 pairs of 8)": (gauss, lambda r, n: gauss(r, n) @ chol.T),
        "subpopulation (digits: only classes 0-2)": (
            digits_gen,
            lambda r, n: pool[few[r.integers(0, len(few), n)]],
        ),
        "noise (digits + N(0, 1) per pixel)": (
            digits_gen,
            lambda r, n: digits_gen(r, n) + r.normal(size=(n, 64)),
        ),
    }


class AdwinPerFeature:
    """River ADWIN (default delta) on every feature; an alarm when any fires."""

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


def run(det: DriftDetector | AdwinPerFeature, stream: np.ndarray) -> tuple[int | None, int]:
    """(delay after CHANGE or None, false alarms before it), batches of BATCH rows."""
    det.reset()
    i, false = 0, 0
    while i < len(stream):
        batch = stream[i : i + BATCH]
        if isinstance(det, AdwinPerFeature):
            idx = det.update(batch)
        else:
            res = det.update(batch)
            idx = res.index if res.drift else None
        if idx is None:
            i += len(batch)
        elif i + idx < CHANGE:
            false += 1
            i += idx + 1
            det.reset()
        else:
            return i + idx - CHANGE + 1, false
    return None, false


def fmt_delays(got: list[tuple[int | None, int]]) -> tuple[str, str, str]:
    delays = [d for d, _ in got if d is not None]
    med = f"{statistics.median(delays):,.0f}" if delays else "—"
    missed = f"{sum(d is None for d, _ in got)}/{len(got)}"
    false = str(sum(f for _, f in got))
    return med, missed, false


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def bench_delay(reps: int, alibi: str | None) -> None:
    results: dict[str, dict[str, list[tuple[int | None, int]]]] = {}
    arrays: dict[str, np.ndarray] = {"ert": np.array(ERT), "change": np.array(CHANGE)}
    names = list(scenarios())
    for k, (name, (before, after)) in enumerate(scenarios().items()):
        ref = before(np.random.default_rng(10 + k), 5000)
        arrays[f"ref_{k}"] = ref
        streams = []
        for rep in range(reps):
            rng = np.random.default_rng(100 + 10 * k + rep)
            streams.append(np.concatenate([before(rng, CHANGE), after(rng, AFTER)]))
            arrays[f"s{k}_{rep}"] = streams[-1]
        dets: dict[str, DriftDetector | AdwinPerFeature] = {
            "OnlineMMD (windows 200 + 25)": OnlineMMD(ert=ERT, window=200).fit(ref),
            "OnlineMMD (window 200 only)": OnlineMMD(ert=ERT, window=200, short_window=0).fit(ref),
            "FeatureDrift (windows 200 + 25)": FeatureDrift(ert=ERT, window=200).fit(ref),
            "River ADWIN per feature (no ert)": AdwinPerFeature(ref.shape[1]),
        }
        for dname, det in dets.items():
            results.setdefault(name, {})[dname] = [run(det, s) for s in streams]
    if alibi:
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(Path(tmp) / "in.npz", **arrays)
            subprocess.run(
                [alibi, str(HERE / "_alibi_peer.py"), str(Path(tmp) / "in.npz"), f"{tmp}/o.json"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            peer = json.loads((Path(tmp) / "o.json").read_text())
        for key, by_det in peer.items():
            for dname, got in by_det.items():
                results[names[int(key[1:])]][dname] = [tuple(g) for g in got]  # type: ignore[misc]
    rows = []
    for name, by_det in results.items():
        best_peer = min(
            (
                statistics.median([d for d, _ in got if d is not None])
                for dname, got in by_det.items()
                if not dname.startswith(("OnlineMMD", "FeatureDrift"))
                and any(d is not None for d, _ in got)
            ),
            default=None,
        )
        for dname, got in by_det.items():
            med, missed, false = fmt_delays(got)
            mark = ""
            if best_peer is not None and dname.startswith(("OnlineMMD", "FeatureDrift")):
                delays = [d for d, _ in got if d is not None]
                if delays:
                    mark = f"{statistics.median(delays) / best_peer:.2f}x best peer"
            rows.append([name, dname, med, missed, false, mark])
    table(
        f"Detection delay at ert={ERT} (events after the change at row {CHANGE}; median of "
        f"{reps}; batches of {BATCH}; {AFTER} events after the change)",
        ["change", "detector", "median delay", "missed", "false alarms before change", "ratio"],
        rows,
    )


def observed(det: DriftDetector, stream: np.ndarray) -> tuple[float, int]:
    alarms, i = 0, 0
    while i < len(stream):
        res = det.update(stream[i : i + 1000])
        if res.drift:
            assert res.index is not None
            alarms += 1
            i += res.index + 1
            det.reset()
        else:
            i += 1000
    return len(stream) / max(alarms, 1), alarms


def bench_false_alarms(n_events: int) -> None:
    pool, _ = _digits()
    gens: dict[str, Gen] = {
        "Gaussian d=8": lambda r, n: r.normal(size=(n, 8)),
        "digits resampled d=64": lambda r, n: pool[r.integers(0, len(pool), n)],
    }
    rows = []
    for ert, window in ((1000, 200), (10_000, 500)):
        for gname, gen in gens.items():
            ref = gen(np.random.default_rng(0), 5000)
            stream = gen(np.random.default_rng(1), n_events)
            for dname, det in (
                ("OnlineMMD", OnlineMMD(ert=ert, window=window).fit(ref)),
                ("FeatureDrift", FeatureDrift(ert=ert, window=window).fit(ref)),
            ):
                obs, alarms = observed(det, stream)
                rows.append(
                    [gname, dname, str(det.windows), f"{ert:,}", str(alarms), f"{obs / ert:.2f}"]
                )
    table(
        f"False alarms per ert ({n_events:,} no-drift events, reset after each alarm)",
        ["stream", "detector", "windows", "requested ert", "alarms", "observed / requested"],
        rows,
    )


def _outputs(rng: np.random.Generator, n: int, hard: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary scores whose true accuracy is conf ** 0.4 (under-confident model)."""
    margin = rng.beta(2.0, hard, n)
    p1 = np.where(rng.random(n) < 0.5, 0.5 + margin / 2, 0.5 - margin / 2)
    probs = np.stack([1 - p1, p1], axis=1)
    right = rng.random(n) < probs.max(axis=1) ** 0.4
    labels = np.where(right, probs.argmax(1), 1 - probs.argmax(1))
    return probs, labels


def bench_estimate(nannyml: str | None, chunks: int = 20, chunk: int = 500) -> None:
    rng = np.random.default_rng(7)
    ref_p, ref_y = _outputs(rng, 5000, 1.0)
    parts = [_outputs(rng, chunk, 1.0 if c < chunks // 2 else 3.0) for c in range(chunks)]
    truth = np.array([(p.argmax(1) == y).mean() for p, y in parts])
    cal = OutputDrift(ert=10_000).fit(ref_p, labels=ref_y)
    raw = OutputDrift(ert=10_000).fit(ref_p)
    ours = np.array([cal.estimate_accuracy(p) for p, _ in parts])
    naive = np.array([raw.estimate_accuracy(p) for p, _ in parts])
    rows = [
        ["OutputDrift, calibrated on reference labels", f"{np.abs(ours - truth).mean():.4f}"],
        ["OutputDrift, raw confidence (no labels)", f"{np.abs(naive - truth).mean():.4f}"],
    ]
    if nannyml:
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(
                Path(tmp) / "in.npz",
                ref_p=ref_p[:, 1],
                ref_y=ref_y,
                ana_p=np.concatenate([p[:, 1] for p, _ in parts]),
                chunk=np.array(chunk),
            )
            subprocess.run(
                [nannyml, str(HERE / "_nannyml_peer.py"), f"{tmp}/in.npz", f"{tmp}/o.json"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            cbpe = np.array(json.loads((Path(tmp) / "o.json").read_text()))
        err = np.abs(cbpe - truth).mean()
        rows.append(["NannyML CBPE (accuracy)", f"{err:.4f}"])
        rows[0].append(f"{np.abs(ours - truth).mean() / err:.2f}x CBPE's error")
        rows[1].append(f"{np.abs(naive - truth).mean() / err:.2f}x")
        rows[2].append("1x")
    table(
        f"Label-free accuracy estimate: mean absolute error per chunk ({chunks} chunks of "
        f"{chunk}; harder inputs in the second half; true accuracy = confidence ** 0.4)",
        ["estimator", "mean abs error", "vs CBPE"] if nannyml else ["estimator", "error"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--alarm-events", type=int, default=200_000)
    parser.add_argument("--alibi", default="/tmp/alibi-venv/bin/python")
    parser.add_argument("--nannyml", default="/tmp/nanny-venv/bin/python")
    parser.add_argument("--only", choices=["delay", "alarms", "estimate"], action="append")
    args = parser.parse_args()
    alibi = args.alibi if Path(args.alibi).exists() else None
    nanny = args.nannyml if Path(args.nannyml).exists() else None
    for peer, path in (("alibi-detect", alibi), ("NannyML", nanny)):
        if path is None:
            print(f"_{peer} interpreter not found: left out_", file=sys.stderr)
    if not args.only or "estimate" in args.only:
        bench_estimate(nanny)
    if not args.only or "alarms" in args.only:
        bench_false_alarms(args.alarm_events)
    if not args.only or "delay" in args.only:
        bench_delay(args.reps, alibi)


if __name__ == "__main__":
    main()
