"""Detection after a retraining, with the short reference grown to ``reference_rows`` or not.

After a drift retraining the champion's data version holds only post-change rows (a few
hundred); the monitor grows it from the archive (`driftline.streams.monitor.reference`).
This runs the drift policy of the demo (several seeds) and of benchmark streams the change
was not designed on, both ways in one process, and prints per run the delay of every
injected drift, the false alarms in clean stretches, and the reference sizes alarms were
raised against.

    PYTHONPATH=$PWD python benchmarks/bench_reference_extension.py [stream ...]
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from driftline.config.pipeline import PipelineConfig
from driftline.streams.evaluation import benchmark_streams
from driftline.streams.evaluation.backtest import backtest
from driftline.streams.evaluation.demo import demo_config, digits_scenario
from driftline.streams.monitor.step import MonitorStep

DEFAULT = [
    "demo-0",
    "demo-1",
    "demo-2",
    "gaussian-recurring",
    "wine-gradual",
    "breast-cancer-seasonal",
    "breast-cancer-subpopulation",
    "false-alarm",
]


_SIZES: list[int] = []  # rows of the detector's reference at each alarm, in order
_drift_event = MonitorStep._drift_event


def _logged_drift_event(self: MonitorStep, *args: Any) -> Any:
    ref = self.reference_data_version
    _SIZES.append(self.store.data_version(ref).row_count if ref else 0)
    return _drift_event(self, *args)


MonitorStep._drift_event = _logged_drift_event  # type: ignore[method-assign]


def run(name: str, extend: bool, out: Path) -> str:
    if name.startswith("demo-"):
        scenario = digits_scenario(seed=int(name.split("-")[1]))
        stream, concepts, config = scenario.stream(), scenario.concepts(), demo_config()
    else:
        stream, concepts = benchmark_streams.STREAMS[name]()
        config = PipelineConfig(name=name)
    MonitorStep.extend_references = extend
    _SIZES.clear()
    home = out / f"{name}-{'grown' if extend else 'short'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = backtest(stream, {"drift": config}, home, title=name, concepts=concepts)
    drift = report.run("drift")
    sizes = list(_SIZES)
    delays = " ".join(f"{d.drift.concept}:{d.delay}" for d in report.detections)
    return (
        f"| {name} | {'grown' if extend else 'short'} | {delays or '-'} "
        f"| {len(report.false_alarms)} | {len(drift.deployments)} "
        f"| {' '.join(f'{a.row}@{n}' for a, n in zip(drift.alarms, sizes, strict=True))} |"
    )


def main(names: list[str]) -> None:
    out = Path(tempfile.mkdtemp(prefix="driftline-refext-"))
    print(
        "| stream | reference | delay per drift | false alarms | deployments "
        "| alarm row@reference rows |"
    )
    print("|---|---|---|---|---|---|")
    for name in names or DEFAULT:
        for extend in (False, True):
            print(run(name, extend, out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
