"""Label-free reuse of a recurring concept on default settings: it fires where a concept
comes back and pays there, and never fires where nothing recurs."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.config.pipeline import PipelineConfig
from driftline.streams.evaluation.benchmark_streams import STREAMS
from driftline.streams.evaluation.reuse import compare_reuse


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gaussian-recurring", "breast-cancer-seasonal"])
def test_reuse_fires_on_recurring_concepts_and_costs_no_accuracy(tmp_path: Path, name: str) -> None:
    stream, concepts = STREAMS[name]()
    c = compare_reuse(name, stream, concepts, PipelineConfig(name=name), tmp_path)
    assert c.reuse_rows, c
    assert c.accuracy_on >= c.accuracy_off - 0.003, c
    assert c.wrong_rows_on <= c.wrong_rows_off, c


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wine-gradual", "breast-cancer-subpopulation", "false-alarm"])
def test_reuse_never_fires_where_nothing_recurs(tmp_path: Path, name: str) -> None:
    stream, concepts = STREAMS[name]()
    c = compare_reuse(name, stream, concepts, PipelineConfig(name=name), tmp_path, reuse_off=False)
    assert c.reuse_rows == [], c
