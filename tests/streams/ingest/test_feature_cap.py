"""A cap on the features a row may carry, checked before anything is adopted or fitted.

On main, with no ``feature_names`` in the config, a first message with 4,000 features
(116 kB) pinned the pipeline to them and made the reference fit take 1.2 GB and 55 s.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from driftline.config.pipeline import DEFAULT_MAX_FEATURES, PipelineConfig
from driftline.errors import ConfigError
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import ARROW_CONTENT_TYPE, CONTENT_TYPE_HEADER, InferenceBatch
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def json_row(i: int, n_features: int) -> RawMessage:
    features = {f"f{j}": float(j) for j in range(n_features)}
    doc = {"event_id": f"e{i}", "timestamp": "2026-01-01T00:00:00Z", "pipeline": "cap"}
    doc["features"] = features
    return RawMessage(json.dumps(doc).encode(), topic="cap.inputs", offset=i)


def test_a_hostile_first_message_too_wide_is_a_dead_letter_and_pins_nothing(
    tmp_path: Path,
) -> None:
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    config = PipelineConfig.from_dict({"name": "cap", "detector": {"reference_rows": 40}})
    assert config.max_features == DEFAULT_MAX_FEATURES
    step = MonitorStep(config, store, pipeline="cap")
    started = time.perf_counter()
    out = step.process([json_row(0, 4000)])
    assert time.perf_counter() - started < 5
    assert [d.reason.value for d in out.dead_letters] == ["too_many_features"]
    assert "max_features=256" in out.dead_letters[0].detail
    assert step.feature_names is None  # nothing adopted from it
    out = step.process([json_row(i, 3) for i in range(1, 60)])
    assert out.rows == 59 and not out.dead_letters
    assert step.feature_names == ("f0", "f1", "f2")
    assert step.reference_data_version is not None  # the reference was fitted on them
    store.close()


def test_an_arrow_batch_over_the_configured_cap_is_a_dead_letter(tmp_path: Path) -> None:
    store = LifecycleStore.open(f"sqlite:///{tmp_path}/s.db", artifacts=str(tmp_path / "a"))
    config = PipelineConfig.from_dict({"name": "cap", "max_features": 8})
    step = MonitorStep(config, store, pipeline="cap")
    names = [f"f{j}" for j in range(9)]
    batch = InferenceBatch.from_arrays("cap", ["a", "b"], [T0, T0], np.zeros((2, 9)), names)
    message = RawMessage(
        batch.to_ipc(),
        topic="cap.inputs",
        offset=0,
        headers=((CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode()),),
    )
    out = step.process([message])
    assert [d.reason.value for d in out.dead_letters] == ["too_many_features"]
    store.close()


def test_feature_names_beyond_the_cap_are_refused_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="raise max_features"):
        PipelineConfig.from_dict(
            {"name": "cap", "max_features": 2, "feature_names": ["a", "b", "c"]}
        )
