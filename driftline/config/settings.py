"""Settings: one frozen object with everything a driftline process needs to run a pipeline.

Values come from, highest priority first:

1. keyword overrides given to :meth:`Settings.load` (the CLI's options),
2. environment variables ``DRIFTLINE_<FIELD>`` (``DRIFTLINE_PIPELINE``,
   ``DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS``, ``DRIFTLINE_STORE_URL``, ``DRIFTLINE_ARTIFACTS``,
   ``DRIFTLINE_PARTITIONS``, ...),
3. the TOML config file: the path given to ``load``, else ``DRIFTLINE_CONFIG``, else
   ``driftline.toml`` in the working directory when it exists. Its top-level keys are the
   fields below; its ``[pipeline]`` table is the :class:`driftline.config.pipeline.PipelineConfig`
   (detector, triggers, selection, model, gate, guard)::

       kafka_bootstrap_servers = "kafka-1:9092,kafka-2:9092"
       partitions = 6
       store_url = "postgresql+psycopg://driftline@db/driftline"
       artifacts = "s3://ml-artifacts/driftline"

       [pipeline]
       name = "fraud"
       [pipeline.detector]
       ert = 20000

4. plain ``KAFKA_BOOTSTRAP_SERVERS`` for the brokers, when nothing above names them,
5. the defaults, which run everything locally (SQLite, ``artifacts/``, a broker on
   127.0.0.1:9092).

The pipeline name is ``pipeline`` when given (environment or override), else the
``[pipeline]`` table's ``name``; the two are kept equal. ``store_url`` is a ``SecretStr``:
it may hold a password and is never printed or logged.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from driftline.config.pipeline import PipelineConfig
from driftline.errors import ConfigError
from driftline.schemas import Topics

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_FILE", "Settings"]

CONFIG_ENV = "DRIFTLINE_CONFIG"
DEFAULT_CONFIG_FILE = "driftline.toml"
_PLAIN_KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"

# Set only while `Settings.load` builds an instance, so the TOML source knows which file.
_config_path: ContextVar[Path | None] = ContextVar("driftline_config_path", default=None)


class Settings(BaseSettings):
    """Where a pipeline's data flows and how the streaming processes behave.

    >>> s = Settings(pipeline="fraud", store_url="postgresql://u:secret@db/d")
    >>> s.topics.inputs, s.config.name, s.partitions
    ('fraud.inputs', 'fraud', 1)
    >>> "secret" in repr(s)
    False
    """

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLINE_", frozen=True, extra="forbid", populate_by_name=True
    )

    pipeline: str = Field(default="", description="pipeline name {p}; topics derive from it")
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="comma-separated host:port of Kafka brokers"
    )
    partitions: int = Field(default=1, ge=1, description="partitions of every pipeline topic")
    store_url: SecretStr = SecretStr("sqlite:///driftline.db")
    artifacts: str = Field(default="artifacts", description="directory or pyarrow FS URI")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 turns metrics off")
    batch_size: int = Field(
        default=1000, ge=1, description="most messages per micro-batch (one fetch)"
    )
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    state_dir: Path = Field(default=Path(".driftline"), description="worker state and tables")
    emit_ood: bool = Field(default=False, description="publish per-event OODFlags on {p}.ood")
    config: PipelineConfig = Field(description="the [pipeline] table: detector, triggers, ...")

    @model_validator(mode="before")
    @classmethod
    def _one_pipeline_name(cls, data: Any) -> Any:
        # The name may come from the environment (`pipeline`) or from the file's [pipeline]
        # table; the explicit `pipeline` wins so `DRIFTLINE_PIPELINE=x` can retarget a file.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        config = data.get("config")
        if isinstance(config, dict):
            config = PipelineConfig.from_dict({"name": data.get("pipeline") or "", **config})
        name = data.get("pipeline") or (config.name if config is not None else "")
        if not name:
            raise ValueError(
                "no pipeline name: set DRIFTLINE_PIPELINE, pass --pipeline, or add "
                '[pipeline] name = "..." to the config file'
            )
        if config is None:
            config = PipelineConfig(name=name)
        elif config.name != name:
            config = config.model_copy(update={"name": name})
        data["pipeline"], data["config"] = name, config
        return data

    @field_validator("pipeline")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        Topics(value)  # raises naming the rule when the name cannot become a topic name
        return value

    @property
    def topics(self) -> Topics:
        """Topic names of this pipeline."""
        return Topics(self.pipeline)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        """Read the config file and the environment; ``overrides`` (not None) win over both.

        Raises :class:`driftline.streams.exceptions.ConfigError` naming the bad value and the fix.
        """
        file = _resolve_config_path(path)
        token = _config_path.set(file)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                + (
                    ""
                    if "secret" in str(err["loc"]) or "store_url" in str(err["loc"])
                    else f" (got {err.get('input')!r})"
                )
                for err in exc.errors()
            )
            where = f" (config file {file})" if file else ""
            raise ConfigError(f"invalid driftline settings{where}: {problems}") from None
        finally:
            _config_path.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _EnvSource(settings_cls),
            _TomlSource(settings_cls),
            _PlainKafkaEnv(settings_cls),
        )


def _resolve_config_path(path: str | os.PathLike[str] | None) -> Path | None:
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist: pass an existing TOML file")
        return file
    env = os.environ.get(CONFIG_ENV)
    if env:
        file = Path(env)
        if not file.is_file():
            raise ConfigError(
                f"{CONFIG_ENV}={env} names no file: point it at a TOML file or unset it"
            )
        return file
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


class _EnvSource(EnvSettingsSource):
    """Environment variables, except that ``DRIFTLINE_CONFIG`` names the file (not a field)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "config":
            return None, field_name, False
        return super().get_field_value(field, field_name)


class _PlainKafkaEnv(PydanticBaseSettingsSource):
    """``KAFKA_BOOTSTRAP_SERVERS``, the variable every Kafka tool reads: a fallback below the
    config file, so a file naming its cluster is not overridden by a generic variable."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        value = os.environ.get(_PLAIN_KAFKA_ENV)
        return {"kafka_bootstrap_servers": value} if value else {}


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML config file: top-level keys are fields, ``[pipeline]`` is the pipeline config."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        file = _config_path.get()
        if file is None:
            file = _resolve_config_path(None)
        if file is None:
            return {}
        try:
            doc = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        values = {k: v for k, v in doc.items() if k != "pipeline"}
        table = doc.get("pipeline")
        if isinstance(table, dict):
            values["config"] = PipelineConfig.from_dict(table)
        elif table is not None:
            values["pipeline"] = table
        return values
