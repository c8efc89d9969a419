"""Label-free reuse of a recurring concept: composite accuracy and wrong-model rows, on/off.

    python benchmarks/bench_reuse.py [STREAM ...]

Streams: the demo (digits A B C A D), ``gaussian-recurring`` and ``breast-cancer-seasonal``
(recurring concepts), and ``wine-gradual``, ``breast-cancer-subpopulation``, ``false-alarm``
(nothing recurs: reuse must not fire). Every run uses ``PipelineConfig(name=...)`` defaults,
reuse on (``reuse_alpha=0.05``) or off; prints a Markdown table.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from driftline.config.pipeline import PipelineConfig
from driftline.streams.evaluation.benchmark_streams import STREAMS
from driftline.streams.evaluation.demo import digits_scenario
from driftline.streams.evaluation.reuse import compare_reuse

ORDER = [
    "demo",
    "gaussian-recurring",
    "breast-cancer-seasonal",
    "wine-gradual",
    "breast-cancer-subpopulation",
    "false-alarm",
]


def main(names: list[str]) -> None:
    out = Path(tempfile.mkdtemp(prefix="driftline-reuse-"))
    print(
        "| stream | acc reuse on | acc off | saved | wrong-model rows on | off "
        "| trainings on | off | reuses (row) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names or ORDER:
        if name == "demo":
            scenario = digits_scenario()
            stream, concepts = scenario.stream(), scenario.concepts()
        else:
            stream, concepts = STREAMS[name]()
        c = compare_reuse(name, stream, concepts, PipelineConfig(name=name), out / name)
        print(
            f"| {name} | {c.accuracy_on:.4f} | {c.accuracy_off:.4f} | {c.saved:+.4f} "
            f"| {c.wrong_rows_on} | {c.wrong_rows_off} | {c.trainings_on} | {c.trainings_off} "
            f"| {len(c.reuse_rows)} {c.reuse_rows} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
