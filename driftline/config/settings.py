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

How to reach a secured cluster is the ``kafka_security`` block (:class:`KafkaSecurity`): the
``[kafka_security]`` table of the file, or ``DRIFTLINE_KAFKA_SECURITY__<FIELD>`` variables
(``DRIFTLINE_KAFKA_SECURITY__SASL_PASSWORD``, ...). Every Kafka client driftline builds — the
Faust worker, producers, consumers, the retrainer, replay, admin commands and the subscriber
of ``driftline subscribe`` — reads it. A Schema Registry, for inputs and labels in the
Confluent wire format, is the ``schema_registry`` block (:class:`SchemaRegistry`,
``DRIFTLINE_SCHEMA_REGISTRY__URL``, ...).

The pipeline name is ``pipeline`` when given (environment or override), else the
``[pipeline]`` table's ``name``; the two are kept equal. ``store_url`` is a ``SecretStr``:
it may hold a password and is never printed or logged.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
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
from driftline.redact import redact
from driftline.schemas import (
    ModelVersionSigner,
    ModelVersionVerifier,
    SchemaError,
    Topics,
)

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_FILE", "KafkaSecurity", "SchemaRegistry", "Settings"]

CONFIG_ENV = "DRIFTLINE_CONFIG"
DEFAULT_CONFIG_FILE = "driftline.toml"
_PLAIN_KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"

# Set only while `Settings.load` builds an instance, so the TOML source knows which file.
_config_path: ContextVar[Path | None] = ContextVar("driftline_config_path", default=None)


class KafkaSecurity(BaseModel):
    """How clients authenticate to the brokers and encrypt the connection.

    ``protocol`` is Kafka's ``security.protocol``. The SASL fields apply to ``SASL_PLAINTEXT``
    and ``SASL_SSL``; the TLS fields to ``SSL`` and ``SASL_SSL`` (``ssl_ca_location`` unset
    means the system's trusted CAs, right for managed clusters with public certificates;
    a client certificate and key are for clusters that require mutual TLS). Passwords are
    `SecretStr`: never printed, logged or echoed in an error.

    >>> s = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    ...                   sasl_username="svc", sasl_password="hunter2")
    >>> s.librdkafka_config()["sasl.mechanism"], "hunter2" in repr(s)
    ('SCRAM-SHA-512', False)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(default=None, description="PEM file of trusted CAs")
    ssl_certificate_location: Path | None = Field(default=None, description="client cert PEM")
    ssl_key_location: Path | None = Field(default=None, description="client key PEM")
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = Field(
        default=True, description="verify the broker's certificate names the host dialled"
    )

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = [self.sasl_mechanism, self.sasl_username, self.sasl_password]
        if self.uses_sasl and None in sasl:
            raise ValueError(
                f"protocol {self.protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        if not self.uses_sasl and any(v is not None for v in sasl):
            raise ValueError(
                f"SASL settings given but protocol is {self.protocol}: set protocol to "
                "SASL_SSL or SASL_PLAINTEXT, or remove them"
            )
        files = [self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location]
        if not self.uses_tls and (any(files) or self.ssl_key_password is not None):
            raise ValueError(
                f"TLS settings given but protocol is {self.protocol}: set protocol to SSL or "
                "SASL_SSL, or remove them"
            )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location go together")
        for file in files:
            if file is not None and not file.is_file():
                raise ValueError(f"{file} is not a file")
        return self

    def librdkafka_config(self) -> dict[str, str]:
        """The librdkafka (confluent-kafka) properties for this block; empty for PLAINTEXT."""
        out: dict[str, str] = {}
        if self.protocol == "PLAINTEXT":
            return out
        out["security.protocol"] = self.protocol
        if self.uses_sasl:
            assert self.sasl_mechanism and self.sasl_username and self.sasl_password
            out["sasl.mechanism"] = self.sasl_mechanism
            out["sasl.username"] = self.sasl_username
            out["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_tls:
            if self.ssl_ca_location is not None:
                out["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location and self.ssl_key_location:
                out["ssl.certificate.location"] = str(self.ssl_certificate_location)
                out["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password is not None:
                out["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            out["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context for Python clients (Faust/aiokafka); None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None
        )
        if self.ssl_certificate_location and self.ssl_key_location:
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location),
                self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
            )
        context.check_hostname = self.ssl_check_hostname
        return context


class SchemaRegistry(BaseModel):
    """Where the Confluent-compatible Schema Registry is, for inputs and labels in the wire
    format (magic byte 0, a 4-byte schema id, then Avro or JSON Schema data) and for
    ``driftline schemas register``.

    ``url`` is the registry's base URL (Confluent: ``https://sr.example:8081``; Apicurio:
    ``.../apis/ccompat/v7``). It is the only place driftline takes a registry address from:
    a message's schema id only selects a schema at this registry. Credentials go in
    ``basic_auth_user``/``basic_auth_password`` (a `SecretStr`, never printed), not in the
    URL; ``ssl_ca_location`` is a PEM file of trusted CAs for an ``https`` registry with a
    private CA. ``cache_schemas`` caps the schemas held in memory.

    >>> r = SchemaRegistry(url="https://sr:8081", basic_auth_user="svc",
    ...                    basic_auth_password="hunter2")
    >>> r.client_config()["basic.auth.user.info"], "hunter2" in repr(r)
    ('svc:hunter2', False)
    >>> SchemaRegistry(url="http://u:p@sr:8081")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for SchemaRegistry
    ...
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(default=None, description="base URL of the registry's API")
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(default=None, description="PEM file of trusted CAs")
    timeout_s: float = Field(default=10.0, gt=0, description="timeout of one registry request")
    cache_schemas: int = Field(default=1000, ge=1, description="most schemas held in memory")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest:
            raise ValueError("the registry URL must be http://host[:port][/path] or https://...")
        if "@" in rest.split("/", 1)[0]:
            raise ValueError(
                "credentials in the registry URL: set basic_auth_user and basic_auth_password"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> SchemaRegistry:
        if (self.basic_auth_user is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_user and basic_auth_password go together")
        if self.url is None and (self.basic_auth_user or self.ssl_ca_location):
            raise ValueError("schema registry settings given without a url")
        if self.ssl_ca_location is not None and not self.ssl_ca_location.is_file():
            raise ValueError(f"{self.ssl_ca_location} is not a file")
        return self

    @property
    def configured(self) -> bool:
        return self.url is not None

    def client_config(self) -> dict[str, Any]:
        """The configuration of confluent-kafka's ``SchemaRegistryClient`` for this block."""
        if self.url is None:
            raise ConfigError(
                "no schema registry configured: set DRIFTLINE_SCHEMA_REGISTRY__URL "
                "(or url in the [schema_registry] table of the config file)"
            )
        out: dict[str, Any] = {
            "url": self.url,
            "timeout": self.timeout_s,
            "cache.capacity": self.cache_schemas,
            # One quick retry: a registry that stays down fails the step (see
            # streams/monitor/registry.py), it is not waited for here.
            "max.retries": 1,
        }
        if self.basic_auth_user is not None and self.basic_auth_password is not None:
            out["basic.auth.credentials.source"] = "USER_INFO"
            out["basic.auth.user.info"] = (
                f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
            )
        if self.ssl_ca_location is not None:
            out["ssl.ca.location"] = str(self.ssl_ca_location)
        return out


class Settings(BaseSettings):
    """Where a pipeline's data flows and how the streaming processes behave.

    >>> s = Settings(pipeline="fraud", store_url="postgresql://u:secret@db/d")
    >>> s.topics.inputs, s.config.name, s.partitions
    ('fraud.inputs', 'fraud', 1)
    >>> "secret" in repr(s)
    False
    >>> "KEY" in repr(Settings(pipeline="fraud", artifacts="s3://KEY:SECRET@bucket/a"))
    False
    """

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLINE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
    )

    pipeline: str = Field(default="", description="pipeline name {p}; topics derive from it")
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="comma-separated host:port of Kafka brokers"
    )
    kafka_security: KafkaSecurity = Field(
        default_factory=KafkaSecurity, description="TLS and SASL of the Kafka connection"
    )
    schema_registry: SchemaRegistry = Field(
        default_factory=SchemaRegistry,
        description="Schema Registry for wire-format (Avro / JSON Schema) inputs and labels",
    )
    partitions: int = Field(default=1, ge=1, description="partitions of every pipeline topic")
    store_url: SecretStr = SecretStr("sqlite:///driftline.db")
    artifacts: str = Field(default="artifacts", description="directory or pyarrow FS URI")
    signing_key: SecretStr | None = Field(
        default=None, description="base64 Ed25519 private key that signs model versions"
    )
    verify_keys: str = Field(
        default="", description="comma-separated base64 Ed25519 public keys trusted for models"
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 turns metrics off")
    retrainer_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="the retrainer's metrics port (default: metrics_port + 1; 0 turns them off)",
    )
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

    def __repr_args__(self) -> Any:
        # Credentials can hide in URIs (s3://KEY:SECRET@bucket); SecretStr fields mask themselves.
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "artifacts" and isinstance(value, str) else value

    @property
    def topics(self) -> Topics:
        """Topic names of this pipeline."""
        return Topics(self.pipeline)

    @property
    def retrainer_metrics_port_or_default(self) -> int:
        """Where the retrainer serves its metrics: ``retrainer_metrics_port``, else the port
        after ``metrics_port`` (so a worker and a retrainer share a host), 0 when off.

        >>> Settings(pipeline="p").retrainer_metrics_port_or_default
        9465
        >>> Settings(pipeline="p", metrics_port=0).retrainer_metrics_port_or_default
        0
        """
        if self.retrainer_metrics_port is not None:
            return self.retrainer_metrics_port
        return self.metrics_port + 1 if self.metrics_port else 0

    def model_version_signer(self) -> ModelVersionSigner | None:
        """The signer of the publisher (retrainer, rollback), or None without `signing_key`."""
        if self.signing_key is None:
            return None
        try:
            return ModelVersionSigner(self.signing_key.get_secret_value())
        except SchemaError as exc:
            raise ConfigError(f"DRIFTLINE_SIGNING_KEY: {exc}") from None

    def model_version_verifier(self) -> ModelVersionVerifier:
        """What the monitor and subscribers verify model versions with: `verify_keys`, plus
        the public half of `signing_key` when this process also holds it."""
        keys = [k for k in self.verify_keys.split(",") if k.strip()]
        signer = self.model_version_signer()
        if signer is not None:
            keys.append(signer.public_key)
        try:
            return ModelVersionVerifier(keys)
        except SchemaError as exc:
            raise ConfigError(f"DRIFTLINE_VERIFY_KEYS: {exc}") from None

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
                    if any(
                        w in str(err["loc"])
                        for w in ("secret", "store_url", "security", "signing_key", "registry")
                    )
                    else f" (got {redact(str(err.get('input')))!r})"
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
