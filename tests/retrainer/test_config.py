from __future__ import annotations

from pathlib import Path

import pytest

from driftline.config.pipeline import (
    DataAmountTriggerConfig,
    DriftTriggerConfig,
    EnsembleTriggerConfig,
    PipelineConfig,
)
from driftline.errors import ConfigError

TOML = """
[pipeline]
name = "fraud"
feature_names = ["amount", "age"]
bootstrap_rows = 1000

[pipeline.label]
task = "regression"

[pipeline.detector]
kind = "feature"
ert = 5000

[[pipeline.triggers]]
kind = "drift"
cooldown_s = 600
min_ratio = 1.5

[[pipeline.triggers]]
kind = "ensemble"
policy = "at_least_n"
n = 2
members = [{ kind = "time", every_s = 86400 }, { kind = "data_amount", rows = 50000 }]

[pipeline.selection]
strategy = "coreset"
min_labelled_rows = 50

[pipeline.model]
adapter = "sklearn"
params = { estimator = "sklearn.linear_model.SGDRegressor" }
epochs = 7

[pipeline.gate]
margin = 0.01
metric = "mae"

[pipeline.guard]
mode = "shadow"
"""


def test_defaults_make_a_working_pipeline_from_a_name() -> None:
    cfg = PipelineConfig(name="fraud")
    assert cfg.feature_names is None
    assert [t.kind for t in cfg.triggers] == ["drift"]
    assert cfg.model.adapter == "torch-mlp" and cfg.model.warm_start == "similar"
    assert cfg.metric == "accuracy"
    assert PipelineConfig(name="r", label={"task": "regression"}).metric == "mse"
    assert cfg.guard.enabled and cfg.guard.mode == "enforce"


def test_toml_file_and_text(tmp_path: Path) -> None:
    path = tmp_path / "driftline.toml"
    path.write_text(TOML)
    for source in (path, str(path), TOML):
        cfg = PipelineConfig.from_toml(source)
        assert cfg.name == "fraud" and cfg.bootstrap_rows == 1000
        assert cfg.detector.kind == "feature" and cfg.detector.ert == 5000
        drift, ensemble = cfg.triggers
        assert isinstance(drift, DriftTriggerConfig) and drift.cooldown_s == 600
        assert isinstance(ensemble, EnsembleTriggerConfig) and ensemble.required == 2
        assert isinstance(ensemble.members[1], DataAmountTriggerConfig)
        assert cfg.selection.strategy == "coreset" and cfg.model.epochs == 7
        assert cfg.metric == "mae" and cfg.guard.mode == "shadow"
    # Round trip through the JSON the store records.
    assert PipelineConfig.from_dict(cfg.model_dump(mode="json")) == cfg


def test_config_is_frozen() -> None:
    cfg = PipelineConfig(name="fraud")
    with pytest.raises(ValueError, match="frozen"):
        cfg.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "bad name"}, "pipeline name 'bad name' is not valid"),
        ({"name": "p", "gate": {"margin": -1}}, "gate.margin"),
        ({"name": "p", "gate": {"metric": "auc"}}, "unknown metric 'auc'"),
        ({"name": "p", "triggers": [{"kind": "cron"}]}, "triggers.0"),
        ({"name": "p", "feature_names": ["a", "a"]}, "repeats"),
        ({"name": "p", "colour": "red"}, "colour"),
        (
            {
                "name": "p",
                "triggers": [{"kind": "ensemble", "n": 3, "members": [{"kind": "drift"}]}],
            },
            "n=3 exceeds its 1 members",
        ),
    ],
)
def test_bad_values_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_dict(data)


def test_toml_without_pipeline_table() -> None:
    with pytest.raises(ConfigError, match=r"no \[pipeline\] table"):
        PipelineConfig.from_toml('[kafka]\nbootstrap = "x"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        PipelineConfig.from_toml("[pipeline\nname=")


def test_detector_section_builds_the_detector() -> None:
    det = PipelineConfig.from_dict(
        {"name": "p", "detector": {"kind": "mmd", "ert": 5000, "params": {"window": 200}}}
    ).detector.build()
    assert type(det).__name__ == "OnlineMMD" and det.ert == 5000 and det.window == 200
    assert type(
        PipelineConfig(name="p", detector={"kind": "feature"}).detector.build()
    ).__name__ == ("FeatureDrift")
