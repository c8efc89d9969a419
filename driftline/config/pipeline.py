"""The pipeline config users write: the ``[pipeline]`` table of ``driftline.toml``.

Every section has defaults that work, so ``PipelineConfig(name="fraud")`` is a complete,
running pipeline: an MMD drift detector, retraining on each drift episode, training on the
new data since the drift, a torch MLP warm-started from the most similar past lifecycle, a
champion/challenger gate and a conservative wasted-computation guard.

Example ``driftline.toml``::

    [pipeline]
    name = "fraud"
    bootstrap_rows = 1000

    [pipeline.label]
    task = "classification"

    [pipeline.detector]
    kind = "mmd"
    ert = 20000

    [[pipeline.triggers]]
    kind = "drift"
    cooldown_s = 600

    [[pipeline.triggers]]
    kind = "ensemble"
    policy = "at_least_n"
    n = 2
    members = [{ kind = "time", every_s = 86400 }, { kind = "data_amount", rows = 50000 }]

    [pipeline.selection]
    strategy = "coreset"

    [pipeline.model]
    adapter = "torch-mlp"
    params = { hidden = [64, 64] }
    epochs = 30

    [pipeline.gate]
    confidence = 0.95
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from driftline.errors import ConfigError

__all__ = [
    "TRIGGER_KINDS",
    "DataAmountTriggerConfig",
    "DetectorConfig",
    "DriftTriggerConfig",
    "EnsembleTriggerConfig",
    "GateConfig",
    "GuardConfig",
    "LabelConfig",
    "ModelConfig",
    "PerformanceTriggerConfig",
    "PipelineConfig",
    "SelectionConfig",
    "TimeTriggerConfig",
    "TriggerConfig",
]

HIGHER_IS_BETTER = {"accuracy": True, "f1_macro": True, "r2": True, "mse": False, "mae": False}
"""Metrics the adapters report that a gate or a performance trigger may use."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelConfig(_Section):
    """What the model predicts.

    >>> LabelConfig().task
    'classification'
    """

    task: Literal["classification", "regression"] = "classification"

    @property
    def default_metric(self) -> str:
        """The metric a gate compares when none is named."""
        return "accuracy" if self.task == "classification" else "mse"


class DetectorConfig(_Section):
    """The label-free drift detector the monitor runs (built by
    ``driftline.detectors.make_detector``).

    ``ert`` is the expected number of events between false alarms when nothing drifts;
    ``reference_rows`` is how many rows the monitor fits its first (bootstrap) reference on.

    >>> DetectorConfig().kind, DetectorConfig().ert
    ('mmd', 10000)
    """

    kind: Literal["mmd", "feature", "output"] = "mmd"
    ert: int = Field(default=10_000, ge=1)
    # The detectors resample at least 40 rows to calibrate (detectors.base._MIN_REFERENCE);
    # fewer made the worker's monitor agent crash and restart on every batch.
    reference_rows: int = Field(default=2_000, ge=40)
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> Any:
        """A fresh, unfitted detector of this kind (``driftline.detectors.make_detector``)."""
        from driftline.detectors import make_detector

        return make_detector(self.kind, ert=self.ert, **self.params)


class _TriggerBase(_Section):
    cooldown_s: float = Field(
        default=0.0,
        ge=0,
        description="no training from this trigger within this many seconds of the last one",
    )


class DriftTriggerConfig(_TriggerBase):
    """Train when the monitor raises a drift alarm: one *episode* per change.

    ``min_ratio`` debounces weak alarms: the statistic must exceed ``min_ratio`` times the
    detector's threshold. An episode trains on rows from the estimated change point on; it
    waits (asking for labels) until ``selection.min_labelled_rows`` of those rows have
    labels, and a challenger that loses the gate trains again once the post-change labels
    grew ``retry_growth`` times, up to ``max_attempts`` trainings. No challenger is trained
    while the champion errs on too few post-change holdout rows for any model to pass the
    gate (a skip, not an attempt). The change point is re-estimated on the archived rows
    when the episode trains. With ``refine``, a deployment fitted on too few rows for the
    problem (fewer than a linear model's ``(features + 1) x classes`` parameters) keeps its
    episode open for one more training once enough post-change labels arrived.
    ``cooldown_s`` defers an episode (counted from the last drift-driven training), never
    drops it.

    >>> DriftTriggerConfig(min_ratio=1.5).kind
    'drift'
    """

    kind: Literal["drift"] = "drift"
    min_ratio: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(
        default=4,
        ge=1,
        description="trainings an episode may run before it gives up (label waits excluded)",
    )
    retry_growth: float = Field(
        default=2.0,
        gt=1,
        description="a losing episode trains again once its post-change labels grew this much",
    )
    refine: bool = Field(
        default=True,
        description="a deployment fitted on fewer rows than a linear model of the problem "
        "has parameters ((features + 1) x classes) trains once more, from the same change "
        "point, when the post-change labels can fit that many rows and grew retry_growth times",
    )
    reuse_alpha: float | None = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="label-free reuse of a recurring concept: level of the calibrated test "
        "of the rows after the alarm against each past deployed model's training data "
        "(a true recurrence is missed at most this often; a false alarm redeploys at most "
        "this often); None: never reuse",
    )
    reuse_min_rows: int = Field(
        default=100,
        ge=10,
        description="archived rows after the alarm the reuse test waits for",
    )


class TimeTriggerConfig(_TriggerBase):
    """Train every ``every_s`` seconds (checked on ``Retrainer.tick``).

    >>> TimeTriggerConfig(every_s=3600).every_s
    3600.0
    """

    kind: Literal["time"] = "time"
    every_s: float = Field(gt=0)


class DataAmountTriggerConfig(_TriggerBase):
    """Train when ``rows`` new rows arrived since the last training.

    >>> DataAmountTriggerConfig(rows=10_000).rows
    10000
    """

    kind: Literal["data_amount"] = "data_amount"
    rows: int = Field(ge=1)


class PerformanceTriggerConfig(_TriggerBase):
    """Train when the champion's metric on the latest ``window`` labelled rows is worse than
    ``threshold`` (needs delayed labels).

    >>> PerformanceTriggerConfig(threshold=0.8).metric
    'accuracy'
    """

    kind: Literal["performance"] = "performance"
    metric: str = "accuracy"
    threshold: float
    window: int = Field(default=500, ge=10)
    min_rows: int = Field(default=100, ge=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _check_metric(value)


class EnsembleTriggerConfig(_TriggerBase):
    """Combine triggers: fire when at least ``n`` members fire, or when a majority does.

    >>> t = EnsembleTriggerConfig(policy="majority", members=[{"kind": "drift"},
    ...     {"kind": "data_amount", "rows": 100}, {"kind": "time", "every_s": 60}])
    >>> t.required
    2
    """

    kind: Literal["ensemble"] = "ensemble"
    policy: Literal["at_least_n", "majority"] = "at_least_n"
    n: int = Field(default=1, ge=1)
    members: list[TriggerConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _n_fits(self) -> Self:
        if self.policy == "at_least_n" and self.n > len(self.members):
            raise ValueError(
                f"ensemble n={self.n} exceeds its {len(self.members)} members; "
                f"use n <= {len(self.members)} or add members"
            )
        return self

    @property
    def required(self) -> int:
        """How many members must fire."""
        return len(self.members) // 2 + 1 if self.policy == "majority" else self.n


TriggerConfig = Annotated[
    DriftTriggerConfig
    | TimeTriggerConfig
    | DataAmountTriggerConfig
    | PerformanceTriggerConfig
    | EnsembleTriggerConfig,
    Field(discriminator="kind"),
]
TRIGGER_KINDS = ("drift", "time", "data_amount", "performance", "ensemble")
EnsembleTriggerConfig.model_rebuild()


class SelectionConfig(_Section):
    """Which rows make the training set of a new data version.

    ``new``: rows from the drift's estimated change point on (or since the last training);
    ``all``: every archived row; ``uniform``: a uniform sample of ``sample_rows`` of all rows;
    ``coreset``: the rows nearest to a core set of history plus all new rows.
    For every strategy the change point splits *new* from *history*: only labelled new rows
    count toward ``min_labelled_rows`` and only they form the gate's holdout. With fewer,
    the training waits, a label request for ``label_request_size`` informative events is
    published, and the retrainer retries as labels arrive.

    >>> SelectionConfig().strategy
    'new'
    """

    strategy: Literal["new", "all", "uniform", "coreset"] = "new"
    max_rows: int = Field(default=200_000, ge=1)
    sample_rows: int = Field(default=20_000, ge=1)
    history_coreset_k: int = Field(default=512, ge=1)
    min_labelled_rows: int = Field(default=200, ge=1)
    label_request_size: int = Field(default=50, ge=1)
    coreset_k: int = Field(default=256, ge=1)
    seed: int = 0


class ModelConfig(_Section):
    """The model adapter and how long it may train.

    ``adapter`` is a registered name (``torch-mlp``, ``sklearn``, ``river``) or a dotted path
    ``pkg.mod:Class`` to your own :class:`driftline.retrainer.adapters.ModelAdapter`. ``epochs`` is
    the
    most a training may run, ``patience`` stops it after that many epochs without improvement
    on a validation split, ``max_seconds`` stops it gracefully (the model so far is kept) and
    ``timeout_s`` fails it. ``warm_start`` says where a training starts: from the model of
    the most similar past data (``similar``, falling back to the champion, then scratch),
    from the ``champion``, or from scratch (``none``). When even the most similar past data
    is less similar than ``min_similarity`` (core-set similarity in (0, 1]), the concept is
    new and the model trains from scratch: unrelated weights start worse than fresh ones.

    >>> ModelConfig().adapter, ModelConfig().warm_start
    ('torch-mlp', 'similar')
    """

    adapter: str = "torch-mlp"
    params: dict[str, Any] = Field(default_factory=dict)
    warm_start: Literal["similar", "champion", "none"] = "similar"
    min_similarity: float = Field(default=0.1, ge=0, le=1)
    epochs: int = Field(default=30, ge=1)
    patience: int | None = Field(default=3, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=600.0, gt=0)
    validation_fraction: float = Field(default=0.1, ge=0, lt=1)
    seed: int = 0
    threads: int | None = Field(
        default=1, ge=1, description="torch intra-op threads, so training leaves cores free"
    )


class GateConfig(_Section):
    """Champion/challenger comparison on a holdout of the post-change labelled rows.

    The challenger deploys when a paired one-sided test on per-row loss (McNemar's exact
    test for classification, a paired t-test for regression) shows it better at
    ``confidence``, and its observed gain (champion's mean per-row loss minus its own: the
    accuracy difference, or the drop in squared/absolute error) is at least ``margin``
    (default 0: any gain the test confirms).

    >>> GateConfig().confidence, GateConfig().margin
    (0.9, 0.0)
    """

    metric: str | None = None
    confidence: float = Field(default=0.9, gt=0.5, lt=1)
    margin: float = Field(default=0.0, ge=0)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_holdout_rows: int = Field(default=20, ge=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        return None if value is None else _check_metric(value)


class GuardConfig(_Section):
    """Wasted-computation guard: skip trainings unlikely to be deployed.

    The guard estimates the deployment probability from past trainings in similar
    situations; it skips only when that estimate is below ``threshold`` *and* at least
    ``min_history`` past trainings with known outcomes exist; after ``explore_every`` skips
    in a row it trains once anyway, to keep learning. ``mode="shadow"`` records the
    guard's prediction but trains anyway (to measure it).

    >>> GuardConfig().enabled, GuardConfig().min_history
    (True, 6)
    """

    enabled: bool = True
    mode: Literal["enforce", "shadow"] = "enforce"
    threshold: float = Field(default=0.2, ge=0, le=1)
    min_history: int = Field(default=6, ge=1)
    bandwidth: float = Field(default=0.15, gt=0)
    explore_every: int = Field(default=5, ge=1)


def _default_triggers() -> list[TriggerConfig]:
    return [DriftTriggerConfig()]


DEFAULT_MAX_FEATURES = 256
"""Most features a row may carry unless ``max_features`` says otherwise.

The detectors' reference fit (whitening, kernel maps) costs memory and time quadratic in the
feature count: 4,000 features took 1.2 GB and 55 s, so a first message that wide (116 kB) was
enough to exhaust a worker. 256 covers tabular models (rarely more than a few hundred inputs):
an MMD fit of 2,000 x 256 took 3.6 s and the process peaked at 147 MB (1,024 features: 6 s,
193 MB; two shared cores). Wider pipelines raise it knowingly."""


class PipelineConfig(_Section):
    """Everything a pipeline declares; defaults make a working pipeline with just a name.

    >>> cfg = PipelineConfig(name="fraud")
    >>> cfg.model.adapter, cfg.triggers[0].kind, cfg.selection.strategy, cfg.guard.enabled
    ('torch-mlp', 'drift', 'new', True)
    >>> PipelineConfig.from_toml('[pipeline]\\nname = "fraud"\\n[pipeline.gate]\\nmargin = 0.02'
    ...                          ).gate.margin
    0.02
    """

    name: str
    feature_names: list[str] | None = None
    max_features: int = Field(
        default=DEFAULT_MAX_FEATURES,
        ge=1,
        le=100_000,
        description="most features a row may carry; wider rows are dead letters "
        "(too_many_features) before anything is fitted",
    )
    label: LabelConfig = Field(default_factory=LabelConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    triggers: list[TriggerConfig] = Field(default_factory=_default_triggers)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    bootstrap_rows: int = Field(default=500, ge=1)
    detection: Literal["pooled", "per_partition"] = Field(
        default="per_partition",
        description=(
            "per_partition: one chart per input partition; pooled (opt-in, newer): one drift "
            "chart for the whole pipeline, merged in event-time order from every partition's "
            "sealed detector summaries by one owner (one DriftEvent per change, with the delay "
            "in total rows of one chart over the interleaved rows, whatever the partitions; "
            "workers that bootstrap together converge on the oldest bootstrap reference). "
            "Still opt-in: its broker tests with two workers have not yet passed repeatedly "
            "(see BENCHMARKS.md)"
        ),
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        from driftline.schemas import Topics

        Topics(value)  # raises naming the rule when the name cannot become a topic name
        return value

    @field_validator("feature_names")
    @classmethod
    def _unique_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("feature_names is empty; list the features or leave it out")
            dupes = sorted({n for n in value if value.count(n) > 1})
            if dupes:
                raise ValueError(f"feature_names repeats {dupes}; each feature once")
        return value

    @model_validator(mode="after")
    def _features_within_cap(self) -> PipelineConfig:
        if self.feature_names is not None and len(self.feature_names) > self.max_features:
            raise ValueError(
                f"feature_names lists {len(self.feature_names)} features, more than "
                f"max_features={self.max_features}; raise max_features"
            )
        return self

    @property
    def metric(self) -> str:
        """The metric the gate compares."""
        return self.gate.metric or self.label.default_metric

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Validate a mapping (e.g. the ``[pipeline]`` table); raise :class:`ConfigError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'pipeline'}: {err['msg']} "
                f"(got {err.get('input')!r})"
                for err in exc.errors()
            )
            raise ConfigError(f"invalid pipeline config: {problems}") from None

    @classmethod
    def from_toml(cls, source: str | Path) -> PipelineConfig:
        """Read the ``[pipeline]`` table from a TOML file path or TOML text."""
        text = source.read_text() if isinstance(source, Path) else source
        if isinstance(source, str) and "\n" not in source and source.endswith(".toml"):
            text = Path(source).read_text()
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"pipeline config is not valid TOML: {exc}") from None
        if "pipeline" not in doc:
            raise ConfigError(
                f"no [pipeline] table in the config (found tables {sorted(doc)}); "
                'add one, e.g. [pipeline]\\nname = "fraud"'
            )
        return cls.from_dict(doc["pipeline"])


def _check_metric(value: str) -> str:
    if value not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {value!r}; use one of {sorted(HIGHER_IS_BETTER)}")
    return value
