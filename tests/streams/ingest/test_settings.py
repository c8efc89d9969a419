from __future__ import annotations

from pathlib import Path

import pytest

from driftline.config.settings import Settings
from driftline.errors import ConfigError

TOML = """
kafka_bootstrap_servers = "file-broker:9092"
partitions = 4
store_url = "postgresql://user:hunter2@db/driftline"
batch_size = 250

[pipeline]
name = "fraud"
[pipeline.detector]
ert = 1234
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DRIFTLINE_CONFIG", "DRIFTLINE_PIPELINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str = TOML) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return path


def test_file_values_and_pipeline_table(tmp_path: Path) -> None:
    s = Settings.load(write(tmp_path))
    assert s.pipeline == "fraud"
    assert s.config.name == "fraud"
    assert s.config.detector.ert == 1234
    assert (s.kafka_bootstrap_servers, s.partitions, s.batch_size) == ("file-broker:9092", 4, 250)
    assert s.topics.dlq == "fraud.dlq"


def test_environment_beats_file_and_overrides_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_PARTITIONS", "8")
    monkeypatch.setenv("DRIFTLINE_PIPELINE", "payments")
    s = Settings.load(write(tmp_path))
    assert s.partitions == 8
    assert s.pipeline == "payments" and s.config.name == "payments"
    assert s.config.detector.ert == 1234  # the file's pipeline table still applies
    assert Settings.load(write(tmp_path), partitions=2, pipeline=None).partitions == 2


def test_bootstrap_servers_fall_back_to_plain_kafka_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "plain:1")
    assert Settings.load(pipeline="p").kafka_bootstrap_servers == "plain:1"
    # A file naming its cluster beats the generic variable; the DRIFTLINE_ one beats both.
    assert Settings.load(write(tmp_path)).kafka_bootstrap_servers == "file-broker:9092"
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "prefixed:2")
    assert Settings.load(write(tmp_path)).kafka_bootstrap_servers == "prefixed:2"


def test_config_file_from_environment_and_default_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(write(tmp_path)))
    assert Settings.load().partitions == 4
    monkeypatch.delenv("DRIFTLINE_CONFIG")
    (tmp_path / "driftline.toml").write_text('partitions = 3\n[pipeline]\nname = "d"\n')
    assert Settings.load().partitions == 3


def test_store_url_is_never_shown(tmp_path: Path) -> None:
    s = Settings.load(write(tmp_path))
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.store_url.get_secret_value().endswith("@db/driftline")


def test_frozen() -> None:
    s = Settings.load(pipeline="p")
    with pytest.raises(ValueError):
        s.partitions = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"pipeline": "bad name!"}, "bad name!"),
        ({"pipeline": "p", "partitions": 0}, "partitions"),
        ({}, "no pipeline name"),
    ],
)
def test_bad_values_name_the_value_and_fix(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid driftline settings") as info:
        Settings.load(**kwargs)
    assert needle in str(info.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(write(tmp_path, "partitions = = 3"))
