"""The shipped example files stay valid as the code changes."""

from __future__ import annotations

from pathlib import Path

from driftline.config.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_config_loads() -> None:
    settings = Settings.load(EXAMPLES / "driftline.toml")
    assert settings.pipeline == "fraud"
    assert settings.config.detector.ert == 20000
    assert settings.config.selection.min_labelled_rows == 200
    assert settings.config.gate.confidence == 0.9 and settings.config.gate.margin == 0.0
    assert settings.topics.inputs == "fraud.inputs"
