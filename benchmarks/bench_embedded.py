"""The embedded demo as a benchmark: drift-triggered vs periodic vs never-retrain, per seed.

Each seed samples a new digits stream (same concepts, same drift rows) and runs the three
policies side by side in one process, as `driftline demo` does. Prints a markdown table of
medians over the seeds: detection delay per drift, false alarms, trainings, composite
accuracy, training seconds and wall time.

    python benchmarks/bench_embedded.py            # 3 seeds, about 4 minutes on 2 cores
    python benchmarks/bench_embedded.py --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from driftline.streams.evaluation.demo import digits_scenario, run_demo
from driftline.streams.evaluation.report import Report, version_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows-per-concept", type=int, default=2000)
    args = parser.parse_args()

    per_policy: dict[str, dict[str, list[float]]] = {}
    delays: dict[str, list[float]] = {}
    false_alarms: list[int] = []
    walls: list[float] = []
    recurred: list[bool] = []
    gains: list[float] = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            scenario = digits_scenario(args.rows_per_concept, seed=seed)
            report = run_demo(Path(tmp), scenario=scenario)
            walls.append(time.perf_counter() - started)
        false_alarms.append(len(report.false_alarms))
        recurred.append(_recurs_from_first_a(report))
        gains.extend(g.accuracy_after - g.accuracy_before for g in report.gains)
        for d in report.detections:
            key = f"{d.drift.concept}: {d.drift.kind}"
            delays.setdefault(key, []).append(float("inf") if d.delay is None else d.delay)
        for score in report.scores:
            run = report.run(score.policy)
            row = per_policy.setdefault(score.policy, {})
            retrain = sum(
                t.status == "COMPLETE" and t.trigger != "bootstrap" for t in run.trainings
            )
            for name, value in (
                ("accuracy", score.accuracy.mean_accuracy),
                ("trainings", score.cost.trainings),
                ("retrainings", retrain),
                ("deployments", score.cost.deployments),
                ("seconds", score.cost.training_seconds),
            ):
                row.setdefault(name, []).append(float(value))
        print(f"seed {seed}: {walls[-1]:.0f} s", flush=True)

    med = statistics.median
    print(f"\nMedians over {args.seeds} seeds, {len(scenario.X)} rows each.\n")
    print("| policy | composite accuracy | trainings | retrainings | deployments | training s |")
    print("|---|---|---|---|---|---|")
    for policy, row in per_policy.items():
        print(
            f"| {policy} | {med(row['accuracy']):.3f} | {med(row['trainings']):.0f} | "
            f"{med(row['retrainings']):.0f} | {med(row['deployments']):.0f} | "
            f"{med(row['seconds']):.1f} |"
        )
    drift, periodic = per_policy["drift"], per_policy["periodic"]
    fewer = 1 - med(drift["retrainings"]) / max(med(periodic["retrainings"]), 1)
    print(
        f"\nDrift-triggered retrains {fewer:.0%} less than periodic (goal >= 50%), "
        f"accuracy {med(drift['accuracy']) - med(periodic['accuracy']):+.3f}.\n"
    )
    print("| drift | detection delay (rows, median) | worst |")
    print("|---|---|---|")
    for key, values in delays.items():
        print(f"| {key} | {med(values):.0f} | {max(values):.0f} |")
    print(f"\nFalse alarms in clean stretches: {sum(false_alarms)} over {args.seeds} runs.")
    print(
        f"Deployments that raised accuracy on the drifted rows they served: "
        f"{sum(g > 0 for g in gains)} of {len(gains)} (median gain {med(gains):+.3f})."
    )
    print(
        f"Recurring concept A warm-started from the first A model in {sum(recurred)} of "
        f"{args.seeds} runs."
    )
    print(f"Wall time of one demo (3 policies): median {med(walls):.0f} s, max {max(walls):.0f} s.")


def _recurs_from_first_a(report: Report) -> bool:
    """Whether the model deployed for the second stretch of A started from a first-A model."""
    run = report.run("drift")
    first_a, second_a = report.concepts[0], report.concepts[3]
    names = version_names(run, report.concepts)
    trained_at: dict[str, int] = {}  # a model version's first training
    for t in run.trainings:
        if t.model_version_id:
            trained_at.setdefault(t.model_version_id, t.row)
    for t in run.trainings:
        if t.deployed and second_a.start <= t.row < second_a.end:
            parent = t.warm_start_from
            print(
                f"  recurring A (row {t.row}) warm-started from "
                f"{names.get(parent, parent) if parent else 'scratch'}"
            )
            return parent is not None and trained_at.get(parent, -1) <= first_a.end
    print("  no model deployed for the recurring A")
    return False


if __name__ == "__main__":
    main()
